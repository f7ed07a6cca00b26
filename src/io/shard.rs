//! Deterministic slices of the inputs, for running one job as many (e.g. a Slurm job array).
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The slice i/n of the inputs: the images whose place (path below the input, row of an array
/// file) hashes to i modulo n. Written as `"i/n"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Shard {
    /// Which slice, `0 <= index < count`.
    pub index: u64,
    /// How many slices.
    pub count: u64,
}

impl Shard {
    /// Whether the image at this place (its path below the input, its row in an array file)
    /// belongs to the slice. Chosen by a hash of the place rather than the image's position, so
    /// files added or removed between runs of a sharded job move no other image to another
    /// slice; the place rather than the content, so a task reads only its own images.
    pub fn holds(&self, path: &Path, row: Option<u64>) -> bool {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(path.as_os_str().as_encoded_bytes());
        if let Some(r) = row {
            // A separator no path holds, then the row: `x.npy` row 1 is not the path `x.npy1`.
            h.update([0u8]);
            h.update(r.to_le_bytes());
        }
        let d = h.finalize();
        let first = u64::from_be_bytes(d[..8].try_into().expect("8 bytes of a 32-byte digest"));
        first % self.count == self.index
    }

    /// From a Slurm job array, when running in one: `None` outside an array (no
    /// `SLURM_ARRAY_TASK_ID`); an error naming the variable when a value is not a number or
    /// does not give a slice (never a silent fallback to the whole input).
    pub fn from_env() -> Result<Option<Shard>, String> {
        Shard::from_vars(|k| std::env::var(k).ok())
    }

    /// [`Shard::from_env`] over any source of variables. The slice is the task's position in
    /// the array: (`SLURM_ARRAY_TASK_ID` - `SLURM_ARRAY_TASK_MIN`) / `SLURM_ARRAY_TASK_STEP`
    /// (MIN 0 and STEP 1 when unset) out of `SLURM_ARRAY_TASK_COUNT`, so `--array=1-8` and
    /// `--array=0-14:2` work as `--array=0-7`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Shard>, String> {
        const ID: &str = "SLURM_ARRAY_TASK_ID";
        const COUNT: &str = "SLURM_ARRAY_TASK_COUNT";
        let Some(id_text) = var(ID) else {
            return Ok(None);
        };
        let number = |name: &str, default: Option<u64>| -> Result<u64, String> {
            match (var(name), default) {
                (Some(t), _) => t
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| format!("{name}={t:?}: expected a non-negative integer")),
                (None, Some(d)) => Ok(d),
                (None, None) => Err(format!(
                    "{ID} is set but {name} is not; pass --shard i/n to choose the slice"
                )),
            }
        };
        let id = number(ID, None)?;
        let count = number(COUNT, None)?;
        let min = number("SLURM_ARRAY_TASK_MIN", Some(0))?;
        let step = number("SLURM_ARRAY_TASK_STEP", Some(1))?;
        let bad = |why: &str| {
            Err(format!(
                "{ID}={id_text:?} (count {count}, min {min}, step {step}): {why}; pass --shard i/n"
            ))
        };
        if count == 0 {
            return bad("the array has no tasks");
        }
        if step == 0 {
            return bad("a step of 0");
        }
        if id < min || (id - min) % step != 0 {
            return bad("not a task of the array");
        }
        let index = (id - min) / step;
        if index >= count {
            return bad("past the last task");
        }
        Ok(Some(Shard { index, count }))
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (i, n) = s.split_once('/').ok_or("expected i/n, e.g. 0/8")?;
        let index: u64 = i
            .trim()
            .parse()
            .map_err(|_| format!("bad shard index `{i}`"))?;
        let count: u64 = n
            .trim()
            .parse()
            .map_err(|_| format!("bad shard count `{n}`"))?;
        if count == 0 || index >= count {
            return Err(format!("shard {index}/{count}: need 0 <= i < n"));
        }
        Ok(Shard { index, count })
    }
}

impl TryFrom<String> for Shard {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Shard> for String {
    fn from(s: Shard) -> String {
        s.to_string()
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::Shard;
    use std::path::Path;

    #[test]
    fn parses_and_prints_i_over_n() {
        let s: Shard = " 2 / 8 ".parse().unwrap();
        assert_eq!(s, Shard { index: 2, count: 8 });
        assert_eq!(s.to_string(), "2/8");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"2/8\"");
        assert_eq!(serde_json::from_str::<Shard>("\"2/8\"").unwrap(), s);
    }

    #[test]
    fn refuses_bad_slices() {
        for bad in ["3", "a/2", "1/b", "2/2", "0/0", "-1/4", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<Shard>("\"5/3\"").is_err());
    }

    fn env(vars: &[(&str, &str)]) -> Result<Option<Shard>, String> {
        Shard::from_vars(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn slurm_arrays_give_the_task_position_or_an_error() {
        let s = |index, count| Ok(Some(Shard { index, count }));
        assert_eq!(env(&[]), Ok(None));
        let id_count = |id, count| {
            env(&[
                ("SLURM_ARRAY_TASK_ID", id),
                ("SLURM_ARRAY_TASK_COUNT", count),
            ])
        };
        assert_eq!(id_count("1", "4"), s(1, 4));
        // --array=1-4: ids 1..4.
        let one_based = |id| {
            env(&[
                ("SLURM_ARRAY_TASK_ID", id),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
                ("SLURM_ARRAY_TASK_MIN", "1"),
                ("SLURM_ARRAY_TASK_MAX", "4"),
            ])
        };
        assert_eq!(one_based("4"), s(3, 4));
        assert_eq!(one_based("1"), s(0, 4));
        // --array=0-6:3: ids 0, 3, 6.
        let stepped = |id| {
            env(&[
                ("SLURM_ARRAY_TASK_ID", id),
                ("SLURM_ARRAY_TASK_COUNT", "3"),
                ("SLURM_ARRAY_TASK_STEP", "3"),
            ])
        };
        assert_eq!(stepped("6"), s(2, 3));
        for bad in [
            id_count("5", "2"),
            id_count("2", "2"),
            id_count("x", "2"),
            id_count("-1", "2"),
            id_count("0", "0"),
            id_count("0", "two"),
            id_count("", "2"),
            env(&[("SLURM_ARRAY_TASK_ID", "0")]),
            one_based("0"),
            stepped("4"),
            stepped("9"),
        ] {
            let e = bad.unwrap_err();
            assert!(e.contains("SLURM_ARRAY_TASK_"), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn slices_partition_the_places_and_spread_them() {
        let shards: Vec<Shard> = (0..3).map(|i| Shard { index: i, count: 3 }).collect();
        let mut sizes = [0usize; 3];
        for n in 0..300u64 {
            let name = std::path::PathBuf::from(format!("val/c{}/img{n}.png", n % 7));
            let owners: Vec<usize> = (0..3).filter(|&i| shards[i].holds(&name, None)).collect();
            assert_eq!(owners.len(), 1, "{}", name.display());
            sizes[owners[0]] += 1;
            let rows = (0..3).filter(|&i| shards[i].holds(Path::new("x.npy"), Some(n)));
            assert_eq!(rows.count(), 1);
        }
        // Roughly even (binomial 300 x 1/3: mean 100, sd 8).
        assert!(sizes.iter().all(|&s| (60..=140).contains(&s)), "{sizes:?}");
        // The row is part of the place, and the same place is always in the same slice.
        let a = Shard { index: 0, count: 2 };
        let holders: Vec<bool> = (0..16)
            .map(|r| a.holds(Path::new("x.npy"), Some(r)))
            .collect();
        assert!(holders.contains(&true) && holders.contains(&false));
        assert_eq!(
            a.holds(Path::new("d/p.png"), None),
            a.holds(Path::new("d/p.png"), None)
        );
    }
}
