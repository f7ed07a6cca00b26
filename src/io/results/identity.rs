//! Matching a file's records to the images of a run by identity rather than by position, so that
//! renaming, adding or reordering input files neither shifts nor redoes work, and a file whose
//! content changed is computed again.
use super::schema::{ImageId, Outcome, Record};
use std::collections::{BTreeSet, HashMap};

/// One image of the run's inputs as the matcher sees it (its hash is asked for only when needed).
#[derive(Clone, Debug)]
pub struct Candidate {
    /// Its position among the run's inputs.
    pub index: u64,
    /// Its identity without the hash (`sha256: None`).
    pub id: ImageId,
    /// Its source as records show it (how records without an identity are matched).
    pub source: String,
    /// Its label.
    pub label: Option<usize>,
}

/// The records matched to the run's images.
#[derive(Clone, Debug, Default)]
pub struct Matched {
    /// Every record kept, re-indexed to its image's position (those of images no longer among
    /// the inputs after all of them); records of changed files are left out.
    pub records: Vec<Record>,
    /// Positions of the candidates that have a record.
    pub done: BTreeSet<u64>,
    /// The hash of every candidate that was hashed, by position.
    pub hashes: HashMap<u64, String>,
    /// Whether `records` differ from the records given (the file must be rewritten).
    pub changed: bool,
    /// What the user should know (changed files, renamed files, records without an identity).
    pub notes: Vec<String>,
}

fn label_of(r: &Record) -> Option<Option<usize>> {
    match &r.outcome {
        Outcome::Done { result, .. } => Some(result.label),
        Outcome::Failed { .. } => None,
    }
}

/// Whether `r` may stand for a candidate with label `label` (an error record always may).
fn same_label(r: &Record, label: Option<usize>) -> bool {
    label_of(r).is_none_or(|l| l == label)
}

/// Matches `records` to `candidates` (every image of the run, in order): first by place (path
/// and row) with an equal content hash, then records whose place is gone by content hash (a
/// renamed file), then records without an identity by their source. `hash` gives a candidate's
/// content hash (by position in `candidates`; `None`: unreadable) and is called at most once
/// per candidate. `total` is the number of images of the run: records of images no longer
/// among the inputs are kept, numbered from there.
pub fn match_records(
    records: Vec<Record>,
    candidates: &[Candidate],
    hash: &mut dyn FnMut(usize) -> Option<String>,
    total: u64,
) -> Matched {
    let mut hashes: HashMap<usize, Option<String>> = HashMap::new();
    let mut hash_of =
        |c: usize| -> Option<String> { hashes.entry(c).or_insert_with(|| hash(c)).clone() };
    let mut by_place: HashMap<(Vec<u8>, Option<u64>), Vec<usize>> = HashMap::new();
    let mut by_source: HashMap<&str, Vec<usize>> = HashMap::new();
    for (c, cand) in candidates.iter().enumerate() {
        by_place.entry(cand.id.place()).or_default().push(c);
        by_source.entry(cand.source.as_str()).or_default().push(c);
    }
    let mut taken: Vec<bool> = vec![false; candidates.len()];
    let mut slot: Vec<Option<usize>> = vec![None; records.len()];
    let mut changed_files = 0usize;
    let mut stale: Vec<bool> = vec![false; records.len()];
    // 1. Same place, same content (an error record without a hash: same place).
    for (i, r) in records.iter().enumerate() {
        let Some(id) = &r.image else { continue };
        let Some(list) = by_place.get(&id.place()) else {
            continue;
        };
        let free: Vec<usize> = list.iter().copied().filter(|&c| !taken[c]).collect();
        let found = free.iter().copied().find(|&c| {
            same_label(r, candidates[c].label)
                && match &id.sha256 {
                    Some(want) => hash_of(c).as_deref() == Some(want.as_str()),
                    None => true,
                }
        });
        match found {
            Some(c) => {
                taken[c] = true;
                slot[i] = Some(c);
            }
            // The file at this place now holds other content (or another label): computed again.
            None if !free.is_empty() => {
                stale[i] = true;
                changed_files += 1;
            }
            None => {}
        }
    }
    // 2. A place that is gone: the same content under another name (a renamed file).
    let mut renamed = 0usize;
    let unplaced: Vec<usize> = (0..records.len())
        .filter(|&i| slot[i].is_none() && !stale[i])
        .filter(|&i| {
            records[i]
                .image
                .as_ref()
                .is_some_and(|id| id.sha256.is_some())
        })
        .collect();
    if !unplaced.is_empty() {
        let mut by_hash: HashMap<(String, bool), Vec<usize>> = HashMap::new();
        for c in (0..candidates.len()).filter(|&c| !taken[c]) {
            if let Some(h) = hash_of(c) {
                let key = (h, candidates[c].id.row.is_some());
                by_hash.entry(key).or_default().push(c);
            }
        }
        for i in unplaced {
            let id = records[i].image.as_ref().expect("filtered");
            let key = (id.sha256.clone().expect("filtered"), id.row.is_some());
            let found = by_hash.get(&key).and_then(|list| {
                list.iter()
                    .copied()
                    .find(|&c| !taken[c] && same_label(&records[i], candidates[c].label))
            });
            if let Some(c) = found {
                taken[c] = true;
                slot[i] = Some(c);
                renamed += 1;
            }
        }
    }
    // 3. Records written before identities: by source.
    let mut legacy = 0usize;
    for (i, r) in records.iter().enumerate() {
        if r.image.is_some() {
            continue;
        }
        legacy += 1;
        let found = by_source.get(r.source.as_str()).and_then(|list| {
            list.iter()
                .copied()
                .find(|&c| !taken[c] && same_label(r, candidates[c].label))
        });
        if let Some(c) = found {
            taken[c] = true;
            slot[i] = Some(c);
        }
    }
    let mut out = Matched::default();
    let mut orphans = 0u64;
    let mut changed = false;
    for (i, mut r) in records.into_iter().enumerate() {
        if stale[i] {
            changed = true;
            continue;
        }
        let index = match slot[i] {
            Some(c) => {
                let cand = &candidates[c];
                out.done.insert(cand.index);
                if let Some(id) = &mut r.image {
                    // A renamed file's record takes its new place and source.
                    if id.place() != cand.id.place() {
                        id.path = cand.id.path.clone();
                        id.path_hex = cand.id.path_hex.clone();
                        id.row = cand.id.row;
                        r.source = cand.source.clone();
                        changed = true;
                    }
                }
                cand.index
            }
            None => {
                orphans += 1;
                total + orphans - 1
            }
        };
        changed |= r.index != index;
        r.index = index;
        out.records.push(r);
    }
    if changed_files > 0 {
        out.notes.push(format!(
            "{changed_files} image(s) changed since their record (same path, other content or label): computed again"
        ));
    }
    if renamed > 0 {
        out.notes.push(format!(
            "{renamed} image(s) found under a new name (same content): their records are kept"
        ));
    }
    if orphans > 0 {
        out.notes.push(format!(
            "{orphans} record(s) are of images no longer among the inputs: kept (numbered from {total})"
        ));
    }
    if legacy > 0 {
        out.notes.push(format!(
            "{legacy} record(s) were written before image identities (schema < 1.2): matched by their source path; a changed file among them cannot be detected"
        ));
    }
    out.changed = changed;
    out.hashes = hashes
        .into_iter()
        .filter_map(|(c, h)| Some((candidates[c].index, h?)))
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::results::ImageResult;
    use std::collections::BTreeMap;
    use std::path::Path;

    fn cand(index: u64, path: &str, label: usize) -> Candidate {
        Candidate {
            index,
            id: ImageId::new(Path::new(path), None, None),
            source: path.into(),
            label: Some(label),
        }
    }

    fn rec(index: u64, path: &str, sha: &str, label: usize) -> Record {
        Record {
            index,
            source: path.into(),
            image: Some(ImageId::new(Path::new(path), None, Some(sha.into()))),
            outcome: Outcome::Done {
                label_name: None,
                result: ImageResult {
                    label: Some(label),
                    target: label,
                    prediction: label,
                    prob_target: 0.5,
                    prob_prediction: 0.5,
                    methods: BTreeMap::new(),
                },
            },
            extra: Default::default(),
        }
    }

    #[test]
    fn records_follow_their_images() {
        // Before: a, b, c. Now: a, aa (new), c changed, d (b renamed), and e gone.
        let records = vec![
            rec(0, "d/a.png", "ha", 0),
            rec(1, "d/b.png", "hb", 0),
            rec(2, "d/c.png", "hc", 1),
            rec(3, "d/e.png", "he", 1),
        ];
        let cands = vec![
            cand(0, "d/a.png", 0),
            cand(1, "d/aa.png", 0),
            cand(2, "d/c.png", 1),
            cand(3, "d/d.png", 0),
        ];
        let content = ["ha", "haa", "hc2", "hb"];
        let mut asked = Vec::new();
        let m = match_records(
            records,
            &cands,
            &mut |c| {
                asked.push(c);
                Some(content[c].to_string())
            },
            4,
        );
        assert_eq!(m.done.iter().copied().collect::<Vec<_>>(), vec![0, 3]);
        let got: Vec<(u64, &str)> = m
            .records
            .iter()
            .map(|r| (r.index, r.source.as_str()))
            .collect();
        assert_eq!(got, vec![(0, "d/a.png"), (3, "d/d.png"), (4, "d/e.png")]);
        assert!(m.changed);
        assert_eq!(m.notes.len(), 3, "{:?}", m.notes);
        asked.sort();
        assert_eq!(asked, vec![0, 1, 2, 3], "each candidate hashed once");
    }

    #[test]
    fn a_label_change_is_computed_again_and_legacy_records_match_by_source() {
        let mut old = rec(5, "d/x.png", "hx", 0);
        old.image = None;
        let records = vec![rec(0, "d/a.png", "ha", 0), old];
        let cands = vec![cand(0, "d/a.png", 1), cand(1, "d/x.png", 0)];
        let m = match_records(records, &cands, &mut |_| Some("ha".into()), 2);
        assert_eq!(m.done.iter().copied().collect::<Vec<_>>(), vec![1]);
        assert_eq!(m.records.len(), 1);
        assert_eq!(m.records[0].index, 1);
    }
}
