fn main() {
    skd::dgram::main()
}
