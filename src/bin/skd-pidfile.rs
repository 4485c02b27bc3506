fn main() {
    skd::pidfile::main()
}
