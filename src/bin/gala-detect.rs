use clap::Parser;
use gala::detect::cli::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    gala::cli::main("gala-detect", || gala::detect::main(cli))
}
