//! A network's outputs for a label layout: one block of logits per head, either one over the
//! joint classes or one per label column of a composite label. The loss is summed over the
//! heads, and their softmaxes become the joint and per-column probabilities every prediction
//! carries. Labels stay joint class indices everywhere else (caches, splits, samplers); each
//! head maps them to its own targets here.

use tch::{Device, Kind, Reduction, Tensor};

use loupe::dataset::Layout;
use loupe::train::config::{self, LossKind};
use loupe::train::predictions::Probabilities;

pub struct Heads {
    pub layout: Layout,
    kind: config::Heads,
    /// Outputs of each head, in order.
    sizes: Vec<i64>,
    /// Per head: joint class index -> the head's target index.
    targets: Vec<Tensor>,
}

impl Heads {
    pub fn new(layout: Layout, kind: config::Heads, device: Device) -> Heads {
        let classes = layout.classes.len();
        let (sizes, targets): (Vec<i64>, Vec<Vec<i64>>) = match kind {
            config::Heads::Joint => (vec![classes as i64], vec![(0..classes as i64).collect()]),
            config::Heads::Columns => layout
                .columns
                .iter()
                .enumerate()
                .map(|(k, c)| {
                    (
                        c.values.len() as i64,
                        (0..classes).map(|j| layout.part(j, k) as i64).collect(),
                    )
                })
                .unzip(),
        };
        Heads {
            layout,
            kind,
            sizes,
            targets: targets
                .iter()
                .map(|t| Tensor::from_slice(t).to_device(device))
                .collect(),
        }
    }

    /// Width of the network's last layer.
    pub fn outputs(&self) -> i64 {
        self.sizes.iter().sum()
    }

    /// Each head's logits and its targets for the joint labels `y`.
    fn split<'a>(
        &'a self,
        logits: &'a Tensor,
        y: &'a Tensor,
    ) -> impl Iterator<Item = (Tensor, Tensor)> + 'a {
        let mut start = 0;
        self.sizes.iter().zip(&self.targets).map(move |(&n, t)| {
            let part = logits.narrow(1, start, n);
            start += n;
            (part, t.index_select(0, y))
        })
    }

    /// Per head, class weights inversely proportional to how often each of its targets occurs
    /// among `labels` (joint class indices); 0 for a target that never occurs.
    pub fn balanced_weights(&self, labels: &[i64], device: Device) -> Vec<Tensor> {
        self.sizes
            .iter()
            .zip(&self.targets)
            .map(|(&n, t)| {
                let map = Vec::<i64>::try_from(t.to_device(Device::Cpu)).unwrap_or_default();
                let mut counts = vec![0usize; n as usize];
                for &l in labels {
                    counts[map[l as usize] as usize] += 1;
                }
                let total = labels.len() as f64;
                let w: Vec<f32> = counts
                    .iter()
                    .map(|&c| {
                        if c == 0 {
                            0.0
                        } else {
                            (total / (n as f64 * c as f64)) as f32
                        }
                    })
                    .collect();
                Tensor::from_slice(&w).to_device(device)
            })
            .collect()
    }

    /// The training loss: `kind` on every head, summed; `weights` per head when balancing.
    pub fn loss(
        &self,
        logits: &Tensor,
        y: &Tensor,
        kind: LossKind,
        weights: Option<&[Tensor]>,
    ) -> anyhow::Result<Tensor> {
        let mut total: Option<Tensor> = None;
        for (h, (part, target)) in self.split(logits, y).enumerate() {
            let l = loss_fn(&part, &target, kind, weights.map(|w| &w[h]))?;
            total = Some(match total {
                Some(t) => t + l,
                None => l,
            });
        }
        Ok(total.expect("a network has at least one head"))
    }

    /// Summed (over images and heads) plain cross-entropy: the validation loss.
    pub fn cross_entropy_sum(&self, logits: &Tensor, y: &Tensor) -> anyhow::Result<f64> {
        let mut sum = 0.0;
        for (part, target) in self.split(logits, y) {
            sum += part
                .f_cross_entropy_loss::<Tensor>(&target, None, Reduction::Sum, -100, 0.0)?
                .f_double_value(&[])?;
        }
        Ok(sum)
    }

    /// Each head's softmax, side by side (what test-time augmentation averages).
    pub fn softmax(&self, logits: &Tensor) -> anyhow::Result<Tensor> {
        let mut start = 0;
        let mut parts = Vec::with_capacity(self.sizes.len());
        for &n in &self.sizes {
            parts.push(logits.narrow(1, start, n).f_softmax(1, Kind::Float)?);
            start += n;
        }
        Ok(Tensor::f_cat(&parts, 1)?)
    }

    /// Joint and per-column probabilities of each row of `softmax` (from [`Self::softmax`]).
    pub fn probabilities(&self, softmax: &Tensor) -> anyhow::Result<Vec<Probabilities>> {
        let rows = softmax.to_device(Device::Cpu).contiguous();
        let n = rows.size()[0];
        let flat = Vec::<f32>::try_from(rows.view([-1]))?;
        let width = self.outputs() as usize;
        Ok((0..n as usize)
            .map(|r| self.of_row(&flat[r * width..(r + 1) * width]))
            .collect())
    }

    fn of_row(&self, row: &[f32]) -> Probabilities {
        let composite = self.layout.is_composite();
        match self.kind {
            config::Heads::Joint => Probabilities {
                joint: row.to_vec(),
                columns: if composite {
                    self.layout.columns_from_joint(row)
                } else {
                    Vec::new()
                },
            },
            config::Heads::Columns => {
                let mut rest = row;
                let heads: Vec<Vec<f32>> = self
                    .sizes
                    .iter()
                    .map(|&n| {
                        let (this, next) = rest.split_at(n as usize);
                        rest = next;
                        this.to_vec()
                    })
                    .collect();
                Probabilities {
                    joint: self.layout.joint_from_columns(&heads),
                    columns: if composite { heads } else { Vec::new() },
                }
            }
        }
    }
}

fn loss_fn(
    logits: &Tensor,
    y: &Tensor,
    kind: LossKind,
    weights: Option<&Tensor>,
) -> anyhow::Result<Tensor> {
    Ok(match kind {
        LossKind::Ce => logits.f_cross_entropy_loss(y, weights, Reduction::Mean, -100, 0.0)?,
        LossKind::Smooth => logits.f_cross_entropy_loss(y, weights, Reduction::Mean, -100, 0.1)?,
        LossKind::Focal => {
            // FL = -(1 - p_t)^gamma log p_t, gamma = 2 (Lin et al. 2017).
            let logp = logits
                .f_log_softmax(1, Kind::Float)?
                .f_gather(1, &y.unsqueeze(1), false)?
                .squeeze_dim(1);
            let pt = logp.exp();
            let mut fl = -((pt.ones_like() - &pt).pow_tensor_scalar(2.0) * &logp);
            if let Some(w) = weights {
                fl *= w.index_select(0, y);
            }
            fl.f_mean(Kind::Float)?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn layout() -> Layout {
        Layout::new(
            &strings(&["no/f", "no/m", "wear/f", "wear/m"]),
            &strings(&["mask", "gender"]),
        )
    }

    #[test]
    fn column_heads_sum_their_losses_and_multiply_their_probabilities() {
        let h = Heads::new(layout(), config::Heads::Columns, Device::Cpu);
        assert_eq!(h.outputs(), 4);
        // mask logits (no, wear), then gender logits (f, m).
        let logits = Tensor::from_slice(&[0.0f32, 2.0, 1.0, -1.0]).view([1, 4]);
        let y = Tensor::from_slice(&[3i64]); // wear/m
        let loss = h
            .loss(&logits, &y, LossKind::Ce, None)
            .unwrap()
            .double_value(&[]);
        let ce = |a: f64, b: f64| -(b.exp() / (a.exp() + b.exp())).ln();
        let expected = ce(0.0, 2.0) + ce(1.0, -1.0);
        assert!((loss - expected).abs() < 1e-5, "{loss} vs {expected}");
        let sum = h.cross_entropy_sum(&logits, &y).unwrap();
        assert!((sum - expected).abs() < 1e-5);

        let p = &h.probabilities(&h.softmax(&logits).unwrap()).unwrap()[0];
        let (pw, pm) = (
            (2f64.exp() / (1.0 + 2f64.exp())) as f32,
            ((-1f64).exp() / (1f64.exp() + (-1f64).exp())) as f32,
        );
        assert!((p.columns[0][1] - pw).abs() < 1e-5 && (p.columns[1][1] - pm).abs() < 1e-5);
        assert!((p.joint[3] - pw * pm).abs() < 1e-5, "{:?}", p.joint);
        assert!((p.joint.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn a_joint_head_reports_column_marginals() {
        let h = Heads::new(layout(), config::Heads::Joint, Device::Cpu);
        assert_eq!(h.outputs(), 4);
        let logits = Tensor::from_slice(&[0.0f32, 0.0, 0.0, (3f32).ln()]).view([1, 4]);
        let p = &h.probabilities(&h.softmax(&logits).unwrap()).unwrap()[0];
        assert!((p.joint[3] - 0.5).abs() < 1e-6);
        assert!((p.columns[0][1] - 4.0 / 6.0).abs() < 1e-6);
        assert!((p.columns[1][0] - 2.0 / 6.0).abs() < 1e-6);
    }

    #[test]
    fn balanced_weights_are_per_head() {
        let h = Heads::new(layout(), config::Heads::Columns, Device::Cpu);
        // Three "no/f", one "wear/m": mask no 3 / wear 1, gender f 3 / m 1.
        let w = h.balanced_weights(&[0, 0, 0, 3], Device::Cpu);
        let mask = Vec::<f32>::try_from(&w[0]).unwrap();
        assert!((mask[0] - 4.0 / 6.0).abs() < 1e-6 && (mask[1] - 2.0).abs() < 1e-6);
        let single = Heads::new(
            Layout::new(&strings(&["a", "b", "c"]), &strings(&["class"])),
            config::Heads::Columns,
            Device::Cpu,
        );
        let w = Vec::<f32>::try_from(&single.balanced_weights(&[0, 0, 1], Device::Cpu)[0]).unwrap();
        assert_eq!(w[2], 0.0);
        assert!(single
            .probabilities(&Tensor::from_slice(&[0.2f32, 0.3, 0.5]).view([1, 3]))
            .unwrap()[0]
            .columns
            .is_empty());
    }
}
