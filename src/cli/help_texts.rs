//! The command line explains itself: every flag of every command has help, every flag that takes
//! a value says what it defaults to and which values it accepts (clap's own "[default: ...]" and
//! "[possible values: ...]", else the help's "[default: ...]", "[range: ...]" or
//! "[values: ...]"), and neither `--help` nor the README points to a file that does not ship.
use super::Cli;
use clap::CommandFactory;
use std::any::TypeId;
use std::path::{Path, PathBuf};

fn help(a: &clap::Arg) -> String {
    a.get_long_help()
        .or(a.get_help())
        .map(|s| s.to_string())
        .unwrap_or_default()
}

fn numeric(a: &clap::Arg) -> bool {
    let t = a.get_value_parser().type_id();
    [
        TypeId::of::<usize>(),
        TypeId::of::<u64>(),
        TypeId::of::<u32>(),
        TypeId::of::<i64>(),
        TypeId::of::<f64>(),
        TypeId::of::<f32>(),
    ]
    .into_iter()
    .any(|id| t == id)
}

/// What is wrong with one argument's help, if anything.
fn problems_of(a: &clap::Arg) -> Vec<&'static str> {
    let text = help(a);
    if text.trim().is_empty() {
        return vec!["no help text"];
    }
    let mut out = Vec::new();
    if !a.get_action().takes_values() {
        return out;
    }
    let defaulted = !a.get_default_values().is_empty() || text.contains("[default: ");
    if !defaulted && !a.is_required_set() {
        out.push("takes a value but says nothing of its default");
    }
    let enumerated = !a.get_possible_values().is_empty() && !a.is_hide_possible_values_set();
    let path = a.get_value_parser().type_id() == TypeId::of::<PathBuf>();
    if numeric(a) && !text.contains("[range: ") {
        out.push("a number without its [range: ...]");
    } else if !numeric(a) && !path && !enumerated && !text.contains("[values: ") {
        out.push("a value of its own syntax without its [values: ...]");
    }
    out
}

#[test]
fn every_flag_has_help_with_its_values_and_default() {
    let root = Cli::command();
    let mut bad = Vec::new();
    let mut checked = 0;
    for cmd in root.get_subcommands() {
        if cmd.get_about().is_none() {
            bad.push(format!("{}: no description", cmd.get_name()));
        }
        for a in cmd.get_arguments() {
            let id = a.get_id().as_str();
            if a.is_hide_set() || id == "help" || id == "version" {
                continue;
            }
            checked += 1;
            let name = match a.get_long() {
                Some(l) => format!("{} --{l}", cmd.get_name()),
                None => format!("{} {}", cmd.get_name(), id.to_uppercase()),
            };
            bad.extend(problems_of(a).into_iter().map(|p| format!("{name}: {p}")));
        }
    }
    assert!(checked > 100, "only {checked} arguments found");
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn the_audit_catches_what_it_should() {
    let cases = [
        (clap::Arg::new("x").long("x"), "no help text"),
        (
            clap::Arg::new("x")
                .long("x")
                .help("Images per pass [range: at least 1]")
                .value_parser(clap::value_parser!(usize)),
            "says nothing of its default",
        ),
        (
            clap::Arg::new("x")
                .long("x")
                .help("Images per pass")
                .default_value("4")
                .value_parser(clap::value_parser!(usize)),
            "a number without its [range: ...]",
        ),
        (
            clap::Arg::new("x")
                .long("x")
                .help("Which shard [default: all]")
                .value_parser(clap::value_parser!(String)),
            "a value of its own syntax without its [values: ...]",
        ),
    ];
    for (arg, want) in cases {
        let got = problems_of(&arg);
        assert!(got.iter().any(|p| p.contains(want)), "{want}: {got:?}");
    }
    let good = clap::Arg::new("x")
        .long("x")
        .help("Images per pass [range: at least 1]")
        .default_value("4")
        .value_parser(clap::value_parser!(usize));
    assert!(problems_of(&good).is_empty());
}

/// Words in `text` that name a file of this repository (a path with a folder and an extension;
/// not a URL, a glob or a placeholder such as DIR/x.json), or a document named SPEC.
fn named_files(text: &str) -> Vec<String> {
    let placeholder = |w: &str| {
        let first = w.split('/').next().unwrap_or("");
        !first.is_empty() && first.chars().all(|c| c.is_ascii_uppercase())
    };
    text.split(|c: char| c.is_whitespace() || "`()[],;:'\"".contains(c))
        .map(|w| w.trim_end_matches('.'))
        .filter(|w| {
            let repo_path = w.contains('/')
                && !w.contains("://")
                && !w.starts_with(['$', '/'])
                && !w.contains(['<', '{', '*'])
                && !placeholder(w)
                && Path::new(w).extension().is_some_and(|e| {
                    ["rs", "py", "sh", "md", "json", "toml", "txt"].contains(&e.to_str().unwrap())
                });
            repo_path || w.starts_with("SPEC")
        })
        .map(String::from)
        .collect()
}

#[test]
fn help_and_readme_name_only_files_that_ship() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut texts = vec![(
        "README.md".to_string(),
        std::fs::read_to_string(root.join("README.md")).unwrap(),
    )];
    let mut cli = Cli::command();
    texts.push(("--help".into(), cli.render_long_help().to_string()));
    for cmd in cli.get_subcommands_mut() {
        let name = format!("{} --help", cmd.get_name());
        texts.push((name, cmd.render_long_help().to_string()));
    }
    let mut missing = Vec::new();
    for (what, text) in &texts {
        for f in named_files(text) {
            // Source paths may be given from src/ (e.g. model/load/pickle.rs).
            let ships = root.join(&f).exists() || root.join("src").join(&f).exists();
            if f.starts_with("SPEC") || !ships {
                missing.push(format!("{what}: {f}"));
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
    assert_eq!(
        named_files("see SPEC.md and scripts/x.py, not https://a.b/c.md, DIR/r.json or t/*.rs"),
        ["SPEC.md", "scripts/x.py"]
    );
}
