use clap::Parser;
use gala::flame::cli::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    gala::cli::main("gala-flame", || gala::flame::main(cli))
}
