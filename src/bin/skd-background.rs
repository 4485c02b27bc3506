fn main() {
    skd::background::main()
}
