fn main() {
    skd::setuid::main()
}
