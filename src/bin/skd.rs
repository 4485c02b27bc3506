fn main() {
    skd::multicall::main()
}
