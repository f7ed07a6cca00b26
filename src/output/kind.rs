//! neuronpath's own kinds of output, and how an existing file is recognised as one of them (so a
//! re-run replaces its own outputs without `--force`, and nothing else).
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// The key that marks a JSON output as neuronpath's (its first key).
pub const MARK_KEY: &str = "neuronpath";
/// Written into the `<head>` of every HTML page neuronpath makes.
pub const HTML_MARK: &str = "<meta name=\"generator\" content=\"neuronpath\">";
/// Most bytes read to recognise a file (a results header with many class names is the longest).
const SNIFF: u64 = 16 << 20;

/// What an output is, for recognising an existing file as an earlier output of the same kind.
#[derive(Clone, Debug)]
pub enum Kind {
    /// A `discover` results file: its first line is a results header.
    Results,
    /// An HTML page with [`HTML_MARK`].
    Report,
    /// A JSON object whose first key is [`MARK_KEY`] (written by [`mark_json`]).
    Json,
    /// A `.safetensors` model whose metadata has a [`MARK_KEY`] entry.
    Model,
    /// A file without room for a mark (CSV, SVG, PNG, .npy, appended layouts): ours when the
    /// marked file of the same output set is.
    Beside(PathBuf),
}

impl Kind {
    /// How the kind is named in messages.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Results => "results file",
            Kind::Report => "report",
            Kind::Json => "JSON output",
            Kind::Model => "saved model",
            Kind::Beside(_) => "output",
        }
    }

    /// Whether the existing file at `path` is an earlier output of this kind.
    pub fn is_ours(&self, path: &Path) -> bool {
        match self {
            Kind::Results => is_results(path),
            Kind::Report => is_report(path),
            Kind::Json => is_json(path),
            Kind::Model => is_model(path),
            Kind::Beside(marked) => {
                is_json(marked) || is_model(marked) || is_report(marked) || is_results(marked)
            }
        }
    }
}

fn head(path: &Path, n: u64) -> Option<Vec<u8>> {
    let f = crate::limits::open_regular(path).ok()?;
    let mut buf = Vec::new();
    f.take(n).read_to_end(&mut buf).ok()?;
    Some(buf)
}

fn is_results(path: &Path) -> bool {
    let Some(f) = crate::limits::open_regular(path).ok() else {
        return false;
    };
    let mut line = Vec::new();
    if BufReader::new(f.take(SNIFF))
        .read_until(b'\n', &mut line)
        .is_err()
    {
        return false;
    }
    serde_json::from_slice::<serde_json::Value>(&line)
        .is_ok_and(|v| v["kind"] == "header" && v.get("model").is_some())
}

/// The title of the reports written before the mark existed.
const LEGACY_REPORT_TITLE: &str = "<title>Influential neuron paths: report</title>";

fn is_report(path: &Path) -> bool {
    let has = |b: &[u8], s: &str| b.windows(s.len()).any(|w| w == s.as_bytes());
    head(path, 64 << 10).is_some_and(|b| has(&b, HTML_MARK) || has(&b, LEGACY_REPORT_TITLE))
}

fn is_json(path: &Path) -> bool {
    let Some(bytes) = head(path, 4096) else {
        return false;
    };
    let text = String::from_utf8_lossy(&bytes);
    let Some(rest) = text.trim_start().strip_prefix('{') else {
        return false;
    };
    let rest = rest.trim_start();
    // Written before the common mark: `explain` outputs carry `neuronpath_explain`, a report's
    // summary is exactly {results, images, errors, claims}.
    rest.starts_with(&format!("\"{MARK_KEY}\"")) || {
        let all = head(path, SNIFF).unwrap_or_default();
        serde_json::from_slice::<serde_json::Value>(&all).is_ok_and(|v| {
            let legacy_report = ["results", "images", "errors", "claims"];
            v.get("neuronpath_explain").is_some()
                || v.as_object().is_some_and(|o| {
                    o.len() == legacy_report.len()
                        && legacy_report.iter().all(|k| o.contains_key(*k))
                })
        })
    }
}

fn is_model(path: &Path) -> bool {
    let Some(len) = head(path, 8) else {
        return false;
    };
    let Ok(n) = <[u8; 8]>::try_from(len.as_slice()).map(u64::from_le_bytes) else {
        return false;
    };
    if n > SNIFF {
        return false;
    }
    let Some(bytes) = head(path, 8 + n) else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(&bytes[8..])
        .is_ok_and(|v| v["__metadata__"].get(MARK_KEY).is_some())
}

/// `value` (a JSON object) as pretty JSON whose first key is [`MARK_KEY`]:
/// `{"output": what, "version": the crate's}`. Readers of the object ignore the extra key.
pub fn mark_json(what: &str, value: &serde_json::Value) -> String {
    let mark = serde_json::json!({"output": what, "version": env!("CARGO_PKG_VERSION")});
    let body = serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".into());
    let first = format!("{{\n  \"{MARK_KEY}\": {mark}");
    match body.strip_prefix('{') {
        Some(rest) if value.as_object().is_some_and(|o| !o.is_empty()) => {
            format!("{first},{rest}\n")
        }
        _ => format!("{first}\n}}\n"),
    }
}

/// `html` with [`HTML_MARK`] as the first element of its `<head>`.
pub fn mark_html(html: &str) -> String {
    match html.find("<head>") {
        Some(i) => {
            let at = i + "<head>".len();
            format!("{}{HTML_MARK}{}", &html[..at], &html[at..])
        }
        None => format!("{HTML_MARK}\n{html}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn marked_json_reads_back_and_is_recognised() {
        let dir = tempfile::tempdir().unwrap();
        for v in [json!({"b": [1, 2], "a": {"x": null}}), json!({})] {
            let text = mark_json("atlas", &v);
            let back: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(back[MARK_KEY]["output"], "atlas");
            let mut stripped = back.clone();
            stripped.as_object_mut().unwrap().remove(MARK_KEY);
            assert_eq!(stripped, v);
            let p = dir.path().join("a.json");
            std::fs::write(&p, &text).unwrap();
            assert!(Kind::Json.is_ours(&p));
        }
        let p = dir.path().join("other.json");
        std::fs::write(&p, r#"{"data": "neuronpath"}"#).unwrap();
        assert!(!Kind::Json.is_ours(&p));
        std::fs::write(&p, r#"{"model": "m", "neuronpath_explain": 1}"#).unwrap();
        assert!(Kind::Json.is_ours(&p));
        assert!(!Kind::Json.is_ours(&dir.path().join("missing.json")));
    }

    #[test]
    fn results_reports_and_models_are_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(
            &p,
            "{\"kind\":\"header\",\"model\":{}}\n{\"kind\":\"image\"}\n",
        )
        .unwrap();
        assert!(Kind::Results.is_ours(&p) && !Kind::Report.is_ours(&p));
        std::fs::write(&p, "{\"kind\":\"image\",\"model\":{}}\n").unwrap();
        assert!(!Kind::Results.is_ours(&p));
        std::fs::write(
            &p,
            mark_html("<!DOCTYPE html><html><head><title>t</title></head>"),
        )
        .unwrap();
        assert!(Kind::Report.is_ours(&p) && !Kind::Results.is_ours(&p));
        std::fs::write(&p, "<!DOCTYPE html><html><head><title>t</title></head>").unwrap();
        assert!(!Kind::Report.is_ours(&p));
        // Reports and their summaries from before the mark.
        std::fs::write(&p, format!("<html><head>{LEGACY_REPORT_TITLE}</head>")).unwrap();
        assert!(Kind::Report.is_ours(&p));
        std::fs::write(
            &p,
            r#"{"claims": [], "errors": 0, "images": 3, "results": "r"}"#,
        )
        .unwrap();
        assert!(Kind::Json.is_ours(&p));
        let header = |meta: Value| {
            let h = json!({"__metadata__": meta}).to_string();
            let mut b = (h.len() as u64).to_le_bytes().to_vec();
            b.extend(h.as_bytes());
            b
        };
        std::fs::write(&p, header(json!({"neuronpath": "{}", "format": "pt"}))).unwrap();
        assert!(Kind::Model.is_ours(&p));
        std::fs::write(&p, header(json!({"format": "pt"}))).unwrap();
        assert!(!Kind::Model.is_ours(&p));
        std::fs::write(&p, u64::MAX.to_le_bytes()).unwrap();
        assert!(!Kind::Model.is_ours(&p));
        // A companion decides for the files of its set.
        let marked = dir.path().join("atlas.json");
        assert!(!Kind::Beside(marked.clone()).is_ours(&p));
        std::fs::write(&marked, mark_json("atlas", &json!({"a": 1}))).unwrap();
        assert!(Kind::Beside(marked).is_ours(&p));
    }
}
