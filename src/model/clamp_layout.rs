//! Where each value sits in the flat clamp values and gradients of a batched clamped pass.
use std::ops::Range;

/// The layout of one block's clamp values and of their gradients ([`ClampGrads`]) for a batch
/// of images, each run at `steps` scalings: row `image * steps + step` holds `tokens` rows of
/// `mlp` hidden units, token-major (value of unit `p` at token `t` at `t * mlp + p`, the layout
/// of one image's clean activations too).
///
/// [`ClampGrads`]: crate::model::gradients::ClampGrads
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClampLayout {
    /// Scalings (alpha steps) per image.
    pub steps: usize,
    /// Token rows per batch row (1 for CLS, N-prefix for patches).
    pub tokens: usize,
    /// Hidden units per token.
    pub mlp: usize,
}

impl ClampLayout {
    /// Values in one batch row: `tokens * mlp`.
    pub fn row_len(&self) -> usize {
        self.tokens * self.mlp
    }

    /// The batch row of `image` at `step`.
    pub fn row(&self, image: usize, step: usize) -> usize {
        image * self.steps + step
    }

    /// Batch rows of `images` images.
    pub fn rows(&self, images: usize) -> usize {
        images * self.steps
    }

    /// The image of batch row `row`.
    pub fn image_of(&self, row: usize) -> usize {
        row / self.steps
    }

    /// The shape of one block's clamp tensor for `images` images: (rows, M) for one token (the
    /// CLS row), (rows, tokens, M) otherwise.
    pub fn shape(&self, images: usize) -> Vec<usize> {
        if self.tokens == 1 {
            vec![self.rows(images), self.mlp]
        } else {
            vec![self.rows(images), self.tokens, self.mlp]
        }
    }

    /// Values of `images` images: the length of one block's flat values or gradients.
    pub fn len(&self, images: usize) -> usize {
        images * self.steps * self.row_len()
    }

    /// The flat range of batch row (`image`, `step`).
    pub fn row_range(&self, image: usize, step: usize) -> Range<usize> {
        let start = self.row(image, step) * self.row_len();
        start..start + self.row_len()
    }

    /// Position of (`token`, `unit`) inside one batch row (or one image's clean activations).
    pub fn unit(&self, token: usize, unit: usize) -> usize {
        token * self.mlp + unit
    }

    /// The flat position of unit `unit` at token `token` of image `image` at step `step`.
    pub fn index(&self, image: usize, step: usize, token: usize, unit: usize) -> usize {
        self.row(image, step) * self.row_len() + self.unit(token, unit)
    }
}

#[cfg(test)]
mod tests {
    use super::ClampLayout;

    #[test]
    fn every_position_is_used_once_in_row_major_order() {
        let l = ClampLayout {
            steps: 3,
            tokens: 4,
            mlp: 5,
        };
        let mut expected = 0;
        for i in 0..2 {
            for k in 0..l.steps {
                assert_eq!(l.row_range(i, k).start, expected);
                for t in 0..l.tokens {
                    for p in 0..l.mlp {
                        assert_eq!(l.index(i, k, t, p), expected);
                        assert!(l.row_range(i, k).contains(&expected));
                        expected += 1;
                    }
                }
                assert_eq!(l.row_range(i, k).end, expected);
                assert_eq!(l.image_of(l.row(i, k)), i);
            }
        }
        assert_eq!(l.len(2), expected);
        assert_eq!(l.rows(2), 6);
        assert_eq!(l.shape(2), vec![6, 4, 5]);
        assert_eq!(ClampLayout { tokens: 1, ..l }.shape(2), vec![6, 5]);
    }
}
