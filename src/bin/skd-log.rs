fn main() {
    skd::log::main()
}
