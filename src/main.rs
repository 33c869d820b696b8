fn main() {
    std::process::exit(tapcred::cli::main());
}
