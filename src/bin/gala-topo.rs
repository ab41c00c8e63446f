use clap::Parser;
use gala::topo::cli::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    gala::cli::main("gala-topo", || gala::topo::main(cli))
}
