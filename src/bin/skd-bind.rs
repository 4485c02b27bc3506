fn main() {
    skd::bind::main()
}
