use clap::Parser;
use gala::rca::cli::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    gala::cli::main("gala-rca", || gala::rca::main(cli))
}
