use clap::Parser;

fn main() {
    let cli = z4j_brain::cli::Cli::parse();
    std::process::exit(z4j_brain::cli::run(cli));
}
