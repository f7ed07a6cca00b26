//! The paper's claims, checked on one run's data with a significance test each: holds (p < 0.05
//! and the effect in the claimed direction), does not hold, or not enough data (fewer than
//! [`MIN_IMAGES`] images, or a single class for a class-level claim, or the run lacks what the
//! claim compares).
use super::atlas::Atlas;
use super::manipulation::Manipulation;
use super::pruning::Pruning;
use super::significance::{two_sample, wilcoxon, PMethod};
use super::stats::{mean, summarize, Spread};
use crate::format::{interval, num, p_value};
use crate::io::results::{ImageRecord, Method, Results, TargetKind};
use crate::model::Objective;
use serde::{Deserialize, Serialize};

/// Fewer images than this give "not enough data" for every claim.
pub const MIN_IMAGES: usize = 10;
/// Significance level of the verdicts.
pub const ALPHA: f64 = 0.05;
/// Seed of the permutation tests (Monte Carlo only beyond exact enumeration).
pub const PERMUTATION_SEED: u64 = 2025;

/// What the data say about a claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Significant at [`ALPHA`] in the claimed direction.
    Holds,
    /// Not significant, or significant in the other direction.
    DoesNotHold,
    /// Too few images or classes, or the run lacks what the claim compares.
    NotEnoughData,
}

impl Verdict {
    /// The verdict as the report prints it.
    pub fn words(self) -> &'static str {
        match self {
            Verdict::Holds => "holds",
            Verdict::DoesNotHold => "does not hold",
            Verdict::NotEnoughData => "not enough data",
        }
    }
}

/// One comparison behind a claim: the effect (mean of the per-unit differences, claimed
/// direction positive or negative), its bootstrap interval, a rank effect size and a p-value.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Comparison {
    /// What is compared, e.g. "JAS(path) − JAS(influence)".
    pub what: String,
    /// Units compared: images (paired) or pairs of classes (two samples).
    pub unit: String,
    /// How many units were compared.
    pub n: usize,
    /// The claim says the effect is positive (else negative).
    pub claimed_positive: bool,
    /// Mean difference with the shared bootstrap interval (two samples: difference of means,
    /// interval of the first sample's mean shifted by the second's).
    pub effect: Spread,
    /// Matched-pairs rank-biserial correlation (paired tests) or `None`.
    pub rank_biserial: Option<f64>,
    /// Name of the test.
    pub test: String,
    /// Two-sided p-value.
    pub p: f64,
    /// How `p` was computed.
    pub p_method: PMethod,
}

impl Comparison {
    /// Significant at [`ALPHA`] with the effect in the claimed direction.
    pub fn supports(&self) -> bool {
        let direction = if self.claimed_positive {
            self.effect.mean > 0.0
        } else {
            self.effect.mean < 0.0
        };
        self.p < ALPHA && direction
    }

    fn words(&self) -> String {
        let rb = self
            .rank_biserial
            .map_or(String::new(), |r| format!(", rank-biserial r = {}", num(r)));
        let [mean, low, high] = interval(self.effect.mean, self.effect.ci_low, self.effect.ci_high);
        format!(
            "{}: {mean} [95% CI {low}, {high}] over {} {}{rb}, {} {}",
            self.what,
            self.n,
            self.unit,
            self.test,
            p_value(self.p)
        )
    }
}

/// One claim with its verdict and the numbers behind it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claim {
    /// The claim, as the report states it.
    pub claim: String,
    /// What F is in this claim: "ground-truth label" or "predicted class" (or "none" for claims
    /// that do not involve F).
    pub target: String,
    /// Whether it holds on this run.
    pub verdict: Verdict,
    /// The numbers behind the verdict, as one sentence.
    pub evidence: String,
    /// The tests behind the verdict.
    pub comparisons: Vec<Comparison>,
}

/// The target the run attributed: the ground-truth label or the model's prediction.
pub fn target_words(run: &Results) -> &'static str {
    match run.header.target {
        TargetKind::Predicted => "predicted class",
        TargetKind::Label => "ground-truth label",
        TargetKind::Class(_) => "fixed class",
    }
}

/// What F measures, in words: "the ground-truth label's probability", "the predicted class's
/// logit", "the fixed class's logit minus the logit of Coat", "the embedding's projection on v.npy".
pub fn f_words(run: &Results) -> String {
    let t = target_words(run);
    match &run.header.objective {
        Objective::Prob => format!("the {t}'s probability"),
        Objective::Logit => format!("the {t}'s logit"),
        Objective::LogitDiff { against } => format!(
            "the {t}'s logit minus the logit of {}",
            run.class_names
                .get(*against)
                .cloned()
                .unwrap_or_else(|| format!("class {against}"))
        ),
        Objective::Direction { source, .. } => {
            format!("the embedding's projection on {source}")
        }
    }
}

/// F of one image in symbols: "p(Coat)", "logit(Coat)", "logit(Coat) − logit(Shirt)",
/// "embedding · v.npy".
pub fn f_of(run: &Results, target: usize) -> String {
    let name = |c: usize| {
        run.class_names
            .get(c)
            .cloned()
            .unwrap_or_else(|| format!("class {c}"))
    };
    match &run.header.objective {
        Objective::Prob => format!("p({})", name(target)),
        Objective::Logit => format!("logit({})", name(target)),
        Objective::LogitDiff { against } => {
            format!("logit({}) − logit({})", name(target), name(*against))
        }
        Objective::Direction { source, .. } => format!("embedding · {source}"),
    }
}

fn not_enough(claim: String, target: &str, why: String) -> Claim {
    Claim {
        claim,
        target: target.to_string(),
        verdict: Verdict::NotEnoughData,
        evidence: why,
        comparisons: Vec::new(),
    }
}

fn too_few_images(run: &Results) -> Option<String> {
    (run.images.len() < MIN_IMAGES).then(|| {
        format!(
            "{} image{} in the run; a verdict needs at least {MIN_IMAGES}",
            run.images.len(),
            if run.images.len() == 1 { "" } else { "s" }
        )
    })
}

/// Wilcoxon signed-rank comparison of per-unit differences.
fn paired(what: String, diffs: &[f64], claimed_positive: bool) -> Comparison {
    let d: Vec<f64> = diffs.iter().copied().filter(|x| x.is_finite()).collect();
    let w = wilcoxon(&d);
    Comparison {
        what,
        unit: "images".into(),
        n: d.len(),
        claimed_positive,
        effect: summarize(&d),
        rank_biserial: Some(w.rank_biserial),
        test: "Wilcoxon signed-rank".into(),
        p: w.p,
        p_method: w.method,
    }
}

/// A verdict from comparisons that must all support the claim.
fn verdict_of(comparisons: &[Comparison]) -> Verdict {
    if comparisons.iter().all(Comparison::supports) {
        Verdict::Holds
    } else {
        Verdict::DoesNotHold
    }
}

fn finish(claim: String, target: &str, comparisons: Vec<Comparison>, note: &str) -> Claim {
    let mut evidence: Vec<String> = comparisons.iter().map(Comparison::words).collect();
    if !note.is_empty() {
        evidence.push(note.to_string());
    }
    Claim {
        claim,
        target: target.to_string(),
        verdict: verdict_of(&comparisons),
        evidence: evidence.join("; "),
        comparisons,
    }
}

/// Per image, a method's value (`None` if the image lacks that method).
fn per_image(
    run: &Results,
    method: Method,
    f: impl Fn(&ImageRecord) -> Option<f64>,
) -> Vec<Option<f64>> {
    run.images
        .iter()
        .map(|r| r.result.methods.get(&method).and_then(|_| f(r)))
        .collect()
}

fn differences(a: &[Option<f64>], b: &[Option<f64>]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .filter_map(|(x, y)| Some((*x)? - (*y)?))
        .collect()
}

/// JAS of our paths > influence pattern > activation, each step a paired test over images.
pub fn jas_order(run: &Results) -> Claim {
    let target = target_words(run);
    let claim = format!(
        "JAS of our paths > influence pattern > activation (JAS of {}, reference form)",
        f_words(run)
    );
    if let Some(why) = too_few_images(run) {
        return not_enough(claim, target, why);
    }
    let order = [Method::Path, Method::Influence, Method::Activation];
    let missing: Vec<&str> = order
        .into_iter()
        .filter(|&m| !run.has_method(m))
        .map(Method::name)
        .collect();
    if !missing.is_empty() {
        return not_enough(
            claim,
            target,
            format!("the run has no {} results", missing.join(", ")),
        );
    }
    let jas = |m: Method| per_image(run, m, |r| Some(r.result.methods[&m].jas.reference));
    let (p, i, a) = (
        jas(Method::Path),
        jas(Method::Influence),
        jas(Method::Activation),
    );
    let comparisons = vec![
        paired(
            "JAS(path) − JAS(influence)".into(),
            &differences(&p, &i),
            true,
        ),
        paired(
            "JAS(influence) − JAS(activation)".into(),
            &differences(&i, &a),
            true,
        ),
    ];
    finish(claim, target, comparisons, "")
}

/// Per image F_edit / F_clean of `method` for `factor`: from the manipulation if given, else
/// from the records (which hold removal and enhancement only).
fn ratios(
    run: &Results,
    m: Option<&Manipulation>,
    method: Method,
    factor: f64,
) -> Vec<Option<f64>> {
    if let Some(m) = m {
        let by_index: std::collections::BTreeMap<u64, Option<f64>> = m
            .images
            .iter()
            .map(|o| {
                let r = o.methods.get(&method).and_then(|v| {
                    v.iter()
                        .find(|x| x.factor == factor)
                        .map(|x| x.prob / o.clean_prob)
                });
                (o.index, r)
            })
            .collect();
        return run
            .images
            .iter()
            .map(|r| by_index.get(&r.index).copied().flatten())
            .collect();
    }
    let pick = |r: &ImageRecord| {
        let x = r.result.methods.get(&method)?;
        let edited = if factor == 0.0 {
            x.prob_removed
        } else if factor == 2.0 {
            x.prob_enhanced
        } else {
            return None;
        };
        Some(edited / r.result.prob_target)
    };
    per_image(run, method, pick)
}

/// Editing our path changes F more (lower for removal, higher for enhancement) than editing
/// the activation or random path: a paired test per control over images.
pub fn manipulation(run: &Results, m: Option<&Manipulation>, factor: f64) -> Claim {
    let target = target_words(run);
    let (verb, lower) = if factor < 1.0 {
        ("Removing", true)
    } else {
        ("Enhancing (×2)", false)
    };
    let claim = format!(
        "{verb} our path {} {} more than {} the activation or random path",
        if lower { "lowers" } else { "raises" },
        f_words(run),
        if lower { "removing" } else { "enhancing" }
    );
    if let Some(why) = too_few_images(run) {
        return not_enough(claim, target, why);
    }
    let path = ratios(run, m, Method::Path, factor);
    if path.iter().all(Option::is_none) {
        return not_enough(claim, target, "the run has no `path` results".into());
    }
    let mut comparisons = Vec::new();
    for other in [Method::Activation, Method::Random] {
        let o = ratios(run, m, other, factor);
        if o.iter().all(Option::is_none) {
            continue;
        }
        let what = format!("F_edit/F_clean(path) − F_edit/F_clean({other})");
        comparisons.push(paired(what, &differences(&path, &o), !lower));
    }
    if comparisons.is_empty() {
        let why = "no activation or random paths to compare with".into();
        return not_enough(claim, target, why);
    }
    let note = if comparisons.len() < 2 {
        "no random path to compare with"
    } else {
        ""
    };
    finish(claim, target, comparisons, note)
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
/// class it gives most probability to). Tested with a two-sample permutation test of the mean
/// cosine similarity of look-alike pairs against the other pairs (pairs share classes, so they
/// are not independent: the p-value is a guide, not an exact level).
pub fn look_alike(
    run: &Results,
    atlas: &Atlas,
    groups: &[Vec<usize>],
    m: Option<&Manipulation>,
) -> Claim {
    let target = "none";
    let claim =
        "Classes that look alike are more similar in the atlas than unrelated classes".to_string();
    if let Some(why) = too_few_images(run) {
        return not_enough(claim, target, why);
    }
    if atlas.classes.len() < 2 {
        let why = format!(
            "{} class with images; a class-level claim needs two or more",
            atlas.classes.len()
        );
        return not_enough(claim, target, why);
    }
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
        let why = "no look-alike classes known: pass groups of similar classes, or give the model so that its confusions can be used".into();
        return not_enough(claim, target, why);
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
        let why = format!("{source}: not enough classes with images to compare pairs");
        return not_enough(claim, target, why);
    }
    let t = two_sample(&a, &u, PERMUTATION_SEED);
    let sa = summarize(&a);
    let mu = mean(&u);
    let effect = Spread {
        n: a.len() + u.len(),
        mean: sa.mean - mu,
        ci_low: sa.ci_low - mu,
        ci_high: sa.ci_high - mu,
        ..sa
    };
    let comparison = Comparison {
        what: format!(
            "mean cosine similarity of look-alike pairs ({}, {} pairs) − other pairs ({}, {} pairs)",
            num(sa.mean),
            a.len(),
            num(mu),
            u.len()
        ),
        unit: "class pairs".into(),
        n: a.len() + u.len(),
        claimed_positive: true,
        effect,
        rank_biserial: None,
        test: "two-sample permutation test".into(),
        p: t.p,
        p_method: t.method,
    };
    finish(claim, target, vec![comparison], &source)
}

/// Pruning around the path set keeps F better than pruning around a random set of that size:
/// per class, the mean F over the grid points with p > 0, paired over classes.
pub fn pruning(run: &Results, p: &Pruning) -> Claim {
    let target = target_words(run);
    let claim = format!("Pruning the CLS neurons outside a class's path set keeps {} better than pruning around a random set of the same size", f_words(run));
    if let Some(why) = too_few_images(run) {
        return not_enough(claim, target, why);
    }
    let mut per_class: std::collections::BTreeMap<usize, (Vec<f64>, Vec<f64>)> = Default::default();
    for q in p.per_class.iter().filter(|q| q.p > 0.0) {
        let (Some(c), Some((control, _))) = (q.class, q.control) else {
            continue;
        };
        if q.prob_pruned.is_finite() && control.is_finite() {
            let e = per_class.entry(c).or_default();
            e.0.push(q.prob_pruned);
            e.1.push(control);
        }
    }
    if per_class.is_empty() {
        return not_enough(
            claim,
            target,
            "no control runs (pruning without --control)".into(),
        );
    }
    if per_class.len() < 2 {
        let why = "one class with control runs; a class-level claim needs two or more".into();
        return not_enough(claim, target, why);
    }
    let diffs: Vec<f64> = per_class.values().map(|(a, b)| mean(a) - mean(b)).collect();
    let mut c = paired(
        "F(pruned around the path set) − F(pruned around a random set), mean over grid points with p > 0".into(),
        &diffs,
        true,
    );
    c.unit = "classes".into();
    finish(claim, target, vec![c], "")
}

/// Every claim the run's data can speak to: the JAS order, removal and enhancement, look-alike
/// classes (given the atlas) and pruning (given a pruning run). `groups` of look-alike classes:
/// empty for the built-in groups of known class names.
pub fn check_all(
    run: &Results,
    m: Option<&Manipulation>,
    p: Option<&Pruning>,
    atlas: Option<&Atlas>,
    groups: &[Vec<usize>],
) -> Vec<Claim> {
    let groups = if groups.is_empty() {
        known_groups(&run.class_names)
    } else {
        groups.to_vec()
    };
    let mut claims = vec![
        jas_order(run),
        manipulation(run, m, 0.0),
        manipulation(run, m, 2.0),
    ];
    if let Some(a) = atlas {
        claims.push(look_alike(run, a, &groups, m));
    }
    if let Some(p) = p {
        claims.push(pruning(run, p));
    }
    claims
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(mean: f64, p: f64, positive: bool) -> Comparison {
        Comparison {
            what: String::new(),
            unit: "images".into(),
            n: 20,
            claimed_positive: positive,
            effect: Spread {
                mean,
                ..Default::default()
            },
            rank_biserial: None,
            test: String::new(),
            p,
            p_method: PMethod::Exact,
        }
    }

    #[test]
    fn holds_needs_significance_and_direction() {
        assert_eq!(verdict_of(&[cmp(0.1, 0.01, true)]), Verdict::Holds);
        assert_eq!(verdict_of(&[cmp(-0.1, 0.01, true)]), Verdict::DoesNotHold);
        assert_eq!(verdict_of(&[cmp(0.1, 0.2, true)]), Verdict::DoesNotHold);
        assert_eq!(verdict_of(&[cmp(-0.1, 0.01, false)]), Verdict::Holds);
        assert_eq!(
            verdict_of(&[cmp(0.1, 0.01, true), cmp(0.1, 0.06, true)]),
            Verdict::DoesNotHold
        );
    }
}
