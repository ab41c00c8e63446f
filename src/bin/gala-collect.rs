use clap::Parser;
use gala::collect::cli::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    gala::cli::main("gala-collect", || gala::collect::main(cli))
}
