//! Deterministic slices of the inputs, for running one job as many (e.g. a Slurm job array).
use serde::{Deserialize, Serialize};

/// The slice i/n of the inputs: the images whose index is i modulo n. Written as `"i/n"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Shard {
    /// Which slice, `0 <= index < count`.
    pub index: u64,
    /// How many slices.
    pub count: u64,
}

impl Shard {
    /// Whether the image with this index belongs to the slice.
    pub fn contains(&self, image_index: u64) -> bool {
        image_index % self.count == self.index
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
    fn slices_partition_the_indices() {
        let shards: Vec<Shard> = (0..3).map(|i| Shard { index: i, count: 3 }).collect();
        for idx in 0..30u64 {
            assert_eq!(shards.iter().filter(|s| s.contains(idx)).count(), 1);
        }
    }
}
