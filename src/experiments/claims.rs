//! The paper's claims, checked on one run's data and stated plainly: holds, does not hold, or
//! cannot be tested here (and why).
use super::atlas::Atlas;
use super::manipulation::Manipulation;
use super::pruning::Pruning;
use super::results::Run;
use super::stats::{mean, spread, Spread};
use super::svg::num;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Holds,
    DoesNotHold,
    NotTestable,
}

impl Verdict {
    pub fn words(self) -> &'static str {
        match self {
            Verdict::Holds => "holds",
            Verdict::DoesNotHold => "does not hold",
            Verdict::NotTestable => "not testable",
        }
    }
}

/// One claim with the numbers behind its verdict.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claim {
    pub claim: String,
    pub verdict: Verdict,
    pub evidence: String,
}

fn ci(s: &Spread) -> String {
    format!(
        "{} [95% CI {}, {}]",
        num(s.mean),
        num(s.ci_low),
        num(s.ci_high)
    )
}

/// Mean JAS of our paths > influence pattern > activation.
pub fn jas_order(run: &Run) -> Claim {
    let claim = "Mean JAS of our paths > influence pattern > activation".to_string();
    let order = ["path", "influence", "activation"];
    let missing: Vec<&str> = order
        .iter()
        .copied()
        .filter(|m| !run.has_method(m))
        .collect();
    if !missing.is_empty() || run.images.is_empty() {
        let evidence = format!("the run has no {} results", missing.join(", "));
        return Claim {
            claim,
            verdict: Verdict::NotTestable,
            evidence,
        };
    }
    let s: Vec<Spread> = order
        .iter()
        .map(|m| {
            let v: Vec<f64> = run
                .images
                .iter()
                .filter_map(|r| r.result.methods.get(*m).map(|x| x.jas.reference))
                .collect();
            spread(&v, 1000, 7)
        })
        .collect();
    let holds = s[0].mean > s[1].mean && s[1].mean > s[2].mean;
    let wins = run
        .images
        .iter()
        .filter(|r| {
            r.result.methods["path"].jas.reference > r.result.methods["activation"].jas.reference
        })
        .count();
    let evidence = format!(
        "mean JAS over {} images: path {}, influence {}, activation {}; path beats activation on {}/{} images",
        run.images.len(),
        ci(&s[0]),
        ci(&s[1]),
        ci(&s[2]),
        wins,
        run.images.len()
    );
    Claim {
        claim,
        verdict: if holds {
            Verdict::Holds
        } else {
            Verdict::DoesNotHold
        },
        evidence,
    }
}

/// Mean F_edit / F_clean per method for `factor`: from the manipulation if given, else from the
/// records (which hold removal and enhancement only).
fn ratios(run: &Run, m: Option<&Manipulation>, factor: f64) -> Vec<(String, Spread)> {
    if let Some(m) = m {
        return m
            .methods
            .iter()
            .filter_map(|me| Some((me.clone(), m.overall_for(me, factor)?.ratio)))
            .collect();
    }
    super::figures::record_deviations(run, 1000, 7)
        .into_iter()
        .filter(|r| r.1 == factor)
        .map(|r| (r.0, r.2))
        .collect()
}

/// Editing our path changes F more (lower for removal, higher for enhancement) than editing
/// the activation or random path.
pub fn manipulation(run: &Run, m: Option<&Manipulation>, factor: f64) -> Claim {
    let (verb, lower) = if factor < 1.0 {
        ("Removing", true)
    } else {
        ("Enhancing (×2)", false)
    };
    let claim = format!(
        "{verb} our path {} the ground-truth probability more than {} the activation or random path",
        if lower { "lowers" } else { "raises" },
        if lower { "removing" } else { "enhancing" }
    );
    let r = ratios(run, m, factor);
    let get = |name: &str| r.iter().find(|x| x.0 == name).map(|x| x.1);
    let Some(path) = get("path") else {
        return Claim {
            claim,
            verdict: Verdict::NotTestable,
            evidence: "the run has no `path` results".into(),
        };
    };
    let others: Vec<(&str, Spread)> = ["activation", "random"]
        .iter()
        .filter_map(|n| Some((*n, get(n)?)))
        .collect();
    if others.is_empty() {
        let evidence = "no activation or random paths to compare with".into();
        return Claim {
            claim,
            verdict: Verdict::NotTestable,
            evidence,
        };
    }
    let beats = |o: &Spread| {
        if lower {
            path.mean < o.mean
        } else {
            path.mean > o.mean
        }
    };
    let holds = others.iter().all(|(_, o)| beats(o));
    let mut evidence = format!("mean F(edited)/F(clean): path {}", ci(&path));
    for (n, o) in &others {
        evidence += &format!(", {n} {}", ci(o));
    }
    if others.len() < 2 {
        evidence += " (no random path to compare with)";
    }
    Claim {
        claim,
        verdict: if holds {
            Verdict::Holds
        } else {
            Verdict::DoesNotHold
        },
        evidence,
    }
}

/// Built-in look-alike groups for class names of known data sets (Fashion-MNIST).
pub fn known_groups(names: &[String]) -> Vec<Vec<usize>> {
    // "T-shirt/top" and folder names like "00-t-shirt-top" both become "tshirttop".
    let norm = |s: &str| {
        let letters: String = s
            .to_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        letters
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .to_string()
    };
    let groups: [&[&str]; 2] = [
        &["tshirttop", "tshirt", "pullover", "coat", "shirt"],
        &["sandal", "sneaker", "ankleboot"],
    ];
    groups
        .iter()
        .map(|g| {
            (0..names.len())
                .filter(|&c| g.contains(&norm(&names[c]).as_str()))
                .collect::<Vec<_>>()
        })
        .filter(|g| g.len() >= 2)
        .collect()
}

/// Classes that look alike are more similar in the atlas than unrelated ones. "Look alike" is
/// given by `groups` (pairs within a group), else by the model's confusions (each class with the
/// class it gives most probability to).
pub fn look_alike(atlas: &Atlas, groups: &[Vec<usize>], m: Option<&Manipulation>) -> Claim {
    let claim =
        "Classes that look alike are more similar in the atlas than unrelated classes".to_string();
    let ids: Vec<usize> = atlas.classes.iter().map(|e| e.class).collect();
    let mut alike = std::collections::BTreeSet::new();
    let source;
    if !groups.is_empty() {
        for g in groups {
            for &a in g {
                for &b in g {
                    if a < b {
                        alike.insert((a, b));
                    }
                }
            }
        }
        let named: Vec<String> = groups
            .iter()
            .map(|g| {
                g.iter()
                    .map(|&c| {
                        atlas
                            .classes
                            .iter()
                            .find(|e| e.class == c)
                            .map_or(c.to_string(), |e| e.name.clone())
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .collect();
        source = format!("look-alike groups {{{}}}", named.join("}, {"));
    } else if let Some(m) = m {
        for c in &m.confusion {
            if let Some(&(o, _)) = c.others.first() {
                alike.insert((c.class.min(o), c.class.max(o)));
            }
        }
        source = "look-alike = each class and the class the model confuses it with most".into();
    } else {
        let evidence = "no look-alike classes known: pass groups of similar classes, or give the model so that its confusions can be used".into();
        return Claim {
            claim,
            verdict: Verdict::NotTestable,
            evidence,
        };
    }
    let (mut a, mut u) = (Vec::new(), Vec::new());
    for (i, &ci_) in ids.iter().enumerate() {
        for (j, &cj) in ids.iter().enumerate().skip(i + 1) {
            let s = atlas.similarity[i][j];
            if alike.contains(&(ci_.min(cj), ci_.max(cj))) {
                a.push(s)
            } else {
                u.push(s)
            }
        }
    }
    if a.is_empty() || u.is_empty() {
        let evidence = format!("{source}: not enough classes with images to compare pairs");
        return Claim {
            claim,
            verdict: Verdict::NotTestable,
            evidence,
        };
    }
    let holds = mean(&a) > mean(&u);
    let evidence = format!(
        "{source}: mean cosine similarity {} over {} look-alike pairs vs {} over {} other pairs",
        num(mean(&a)),
        a.len(),
        num(mean(&u)),
        u.len()
    );
    Claim {
        claim,
        verdict: if holds {
            Verdict::Holds
        } else {
            Verdict::DoesNotHold
        },
        evidence,
    }
}

/// Pruning around the path set keeps F better than pruning around a random set of that size.
pub fn pruning(p: &Pruning) -> Claim {
    let claim = "Pruning the CLS neurons outside a class's path set keeps its probability better than pruning around a random set of the same size".to_string();
    let pairs: Vec<(f64, f64)> = p
        .overall
        .iter()
        .filter(|q| q.p > 0.0)
        .filter_map(|q| Some((q.prob_pruned, q.control?.0)))
        .filter(|(a, b)| a.is_finite() && b.is_finite())
        .collect();
    if pairs.is_empty() {
        return Claim {
            claim,
            verdict: Verdict::NotTestable,
            evidence: "no control runs (pruning without --control)".into(),
        };
    }
    let better = pairs.iter().filter(|(a, b)| a > b).count();
    let (mp, mc) = (
        mean(&pairs.iter().map(|x| x.0).collect::<Vec<_>>()),
        mean(&pairs.iter().map(|x| x.1).collect::<Vec<_>>()),
    );
    let evidence = format!(
        "mean F over {} grid points with p > 0: path set kept {}, random set kept {}; path set better at {}/{} points",
        pairs.len(),
        num(mp),
        num(mc),
        better,
        pairs.len()
    );
    Claim {
        claim,
        verdict: if mp > mc {
            Verdict::Holds
        } else {
            Verdict::DoesNotHold
        },
        evidence,
    }
}
