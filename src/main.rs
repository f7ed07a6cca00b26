use clap::Parser;

mod runtime;

fn main() {
    runtime::tune();
    let cli = neuronpath::cli::Cli::parse();
    if let Err(e) = neuronpath::cli::run(cli) {
        // One line, no backtrace: errors here are about the user's input. Causes whose text the
        // message already holds (errors that print their source) are not repeated.
        let mut line = e.to_string();
        for cause in e.chain().skip(1) {
            let text = cause.to_string();
            if !line.contains(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
        }
        eprintln!("error: {line}");
        std::process::exit(1);
    }
}
