//! Seeded fuzzing of the results-line parser: thousands of mutated header and record lines (bit
//! flips, extreme bytes, cuts, duplicated runs, spliced JSON tokens), each read through the one
//! results reader in the middle of a file and as its last line. Every file must give an error
//! naming the file (one line) or valid records: never a panic.
use neuronpath::io::results::{read_results, Record};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::panic::{catch_unwind, AssertUnwindSafe};

const FILE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/results/before_schema.jsonl"
));

/// JSON fragments that make type confusions likelier than random bytes do.
const TOKENS: [&str; 14] = [
    "null",
    "-1",
    "1e400",
    "18446744073709551616",
    "\"\"",
    "[]",
    "{}",
    "true",
    "\"\\ud800\"",
    "[[[[[[[[",
    "\"kind\":\"image\"",
    "\"error\":1",
    "0.5",
    "\"index\":",
];

fn mutate(rng: &mut ChaCha8Rng, src: &str) -> Vec<u8> {
    let mut v = src.as_bytes().to_vec();
    for _ in 0..rng.random_range(1..=4) {
        if v.is_empty() {
            v.push(rng.random());
            continue;
        }
        let at = rng.random_range(0..v.len());
        match rng.random_range(0..6) {
            0 => v[at] ^= 1 << rng.random_range(0..8),
            1 => v[at] = [0x00, 0xff, b'"', b'{', b'}', b',', b':', b'\n'][rng.random_range(0..8)],
            2 => v.truncate(at),
            3 => {
                let end = (at + rng.random_range(1..64)).min(v.len());
                let run = v[at..end].to_vec();
                v.splice(at..at, run);
            }
            4 => {
                let t = TOKENS[rng.random_range(0..TOKENS.len())];
                let end = (at + rng.random_range(0..16)).min(v.len());
                v.splice(at..end, t.bytes());
            }
            _ => {
                let end = (at + rng.random_range(1..32)).min(v.len());
                v.drain(at..end);
            }
        }
    }
    v
}

#[test]
fn mutated_results_lines_give_an_error_or_valid_records() {
    let lines: Vec<&str> = FILE.lines().collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fuzz.jsonl");
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let (mut ok, mut refused) = (0, 0);
    for case in 0..2000 {
        let which = rng.random_range(0..lines.len());
        let line = mutate(&mut rng, lines[which]);
        // The mutated line in the middle of a file, and as its (possibly torn) last line.
        let mut mid = Vec::new();
        let mut last = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            let l = if i == which { &line[..] } else { l.as_bytes() };
            mid.extend_from_slice(l);
            mid.push(b'\n');
        }
        last.extend_from_slice(lines[0].as_bytes());
        last.push(b'\n');
        last.extend_from_slice(&line);
        for bytes in [mid, last] {
            std::fs::write(&path, &bytes).unwrap();
            let got = catch_unwind(AssertUnwindSafe(|| read_results(&path)));
            match got {
                Err(_) => panic!(
                    "case {case}: the reader panicked on {:?}",
                    String::from_utf8_lossy(&line)
                ),
                Ok(Ok((_, records))) => {
                    ok += 1;
                    // What was read is a record that writes back as itself.
                    for r in records {
                        let back: Record =
                            serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
                        assert_eq!(back, r, "case {case}");
                    }
                }
                Ok(Err(e)) => {
                    refused += 1;
                    let m = e.to_string();
                    assert!(m.contains("fuzz.jsonl"), "case {case}: {m}");
                    assert!(!m.contains('\n'), "case {case}: {m}");
                }
            }
        }
        // The bare line through the record parser alone.
        let s = String::from_utf8_lossy(&line);
        let _ = catch_unwind(|| serde_json::from_str::<Record>(&s))
            .unwrap_or_else(|_| panic!("case {case}: Record parser panicked on {s:?}"));
    }
    // Both outcomes occur: the mutations reach the checks, and keep some lines valid.
    assert!(ok > 50 && refused > 500, "ok {ok}, refused {refused}");
}
