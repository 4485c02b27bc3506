fn main() {
    skd::accept::main()
}
