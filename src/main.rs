use clap::Parser;

fn main() {
    neuronpath::runtime::tune();
    let cli = neuronpath::cli::Cli::parse();
    if let Err(e) = neuronpath::cli::run(cli) {
        // One line, the whole cause chain, no backtrace: errors here are the user's input.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
