use clap::Parser;

fn main() {
    std::process::exit(z4j_conformance::main_with(z4j_conformance::Args::parse()));
}
