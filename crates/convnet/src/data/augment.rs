//! Data augmentation for image batches (NHWC): random horizontal flips and random
//! translations, drawn from the training generator so that one seed fixes them too.
//! Applied by `fit` to each training batch, never to validation or test data.

use crate::initializers::Rng;
use crate::tensor::Tensor;
use rand::RngExt;

/// Random image augmentation applied by `fit` to training batches, like Keras's
/// `RandomFlip("horizontal")` and `RandomTranslation` layers; default none.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Augmentation {
    /// Mirror each image left–right with probability ½.
    pub flip: bool,
    /// Shift each image by up to this many pixels in each direction (zeros fill in).
    pub translate: usize,
}

impl Augmentation {
    /// Whether any augmentation is switched on, so that `fit` can skip the per-batch pass.
    pub fn is_active(&self) -> bool {
        self.flip || self.translate > 0
    }

    /// Augments every image of an (n, h, w, c) batch in place.
    pub fn apply(&self, batch: &mut Tensor, rng: &mut Rng) {
        let [n, h, w, c] = *batch.shape() else { return };
        let image_len = h * w * c;
        let mut scratch = vec![0.0f32; image_len];
        for image in batch.data_mut().chunks_mut(image_len).take(n) {
            let flip = self.flip && rng.random::<bool>();
            let t = self.translate as i64;
            let (dy, dx) = if t > 0 {
                (rng.random_range(-t..=t), rng.random_range(-t..=t))
            } else {
                (0, 0)
            };
            if !flip && dy == 0 && dx == 0 {
                continue;
            }
            scratch.fill(0.0);
            for y in 0..h as i64 {
                let sy = y - dy;
                if sy < 0 || sy >= h as i64 {
                    continue;
                }
                for x in 0..w as i64 {
                    let mut sx = x - dx;
                    if sx < 0 || sx >= w as i64 {
                        continue;
                    }
                    if flip {
                        sx = w as i64 - 1 - sx;
                    }
                    let (to, from) = (
                        ((y as usize) * w + x as usize) * c,
                        ((sy as usize) * w + sx as usize) * c,
                    );
                    scratch[to..to + c].copy_from_slice(&image[from..from + c]);
                }
            }
            image.copy_from_slice(&scratch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::initializers::rng_from_seed;

    #[test]
    fn flips_and_shifts_move_pixels_where_they_should() {
        let image = Tensor::new([1, 2, 3, 1], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        // Over many draws a flip must show up, and each result is the image, its mirror,
        let mut seen_flip = false;
        let mut rng = rng_from_seed(1);
        for _ in 0..20 {
            let mut b = image.clone();
            Augmentation {
                flip: true,
                translate: 0,
            }
            .apply(&mut b, &mut rng);
            assert!(b.data() == image.data() || b.data() == [3.0, 2.0, 1.0, 6.0, 5.0, 4.0]);
            seen_flip |= b.data() != image.data();
        }
        assert!(seen_flip);
        // A shift keeps the pixel values and fills with zeros.
        let mut b = image.clone();
        Augmentation {
            flip: false,
            translate: 1,
        }
        .apply(&mut b, &mut rng_from_seed(3));
        assert!(b
            .data()
            .iter()
            .all(|v| *v == 0.0 || image.data().contains(v)));
        // The same seed gives the same augmentation.
        let (mut a1, mut a2) = (image.clone(), image.clone());
        let aug = Augmentation {
            flip: true,
            translate: 1,
        };
        aug.apply(&mut a1, &mut rng_from_seed(9));
        aug.apply(&mut a2, &mut rng_from_seed(9));
        assert_eq!(a1, a2);
    }
}
