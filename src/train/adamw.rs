//! AdamW (Loshchilov & Hutter 2019, arXiv 1711.05101) with its moments in the open, so a
//! checkpoint can save and restore them: candle_nn's `AdamW` keeps `m` and `v` private, and a
//! resumed run must continue exactly.

use std::collections::HashMap;

use candle_core::{DType, Device, Result, Tensor, Var};

/// AdamW's constants.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWParams {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWParams {
    fn default() -> Self {
        AdamWParams {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// The optimizer: named parameters and their first and second moments.
pub struct AdamW {
    params: AdamWParams,
    vars: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Updates applied so far (bias correction uses it).
    t: usize,
}

impl AdamW {
    pub fn new(vars: Vec<(String, Var)>, params: AdamWParams) -> Result<Self> {
        let m = vars
            .iter()
            .map(|(_, v)| v.as_tensor().zeros_like())
            .collect::<Result<Vec<_>>>()?;
        let v = m.clone();
        Ok(AdamW {
            params,
            vars,
            m,
            v,
            t: 0,
        })
    }

    /// Updates applied so far.
    pub fn steps(&self) -> usize {
        self.t
    }

    /// One update with learning rate `lr`; `grads` by parameter name (a missing one counts as
    /// zero).
    pub fn step(&mut self, grads: &HashMap<String, Tensor>, lr: f64) -> Result<()> {
        self.t += 1;
        let p = self.params;
        let c1 = 1.0 - p.beta1.powi(self.t as i32);
        let c2 = 1.0 - p.beta2.powi(self.t as i32);
        for (i, (name, var)) in self.vars.iter().enumerate() {
            let g = match grads.get(name) {
                Some(g) => g.clone(),
                None => var.as_tensor().zeros_like()?,
            };
            let m = ((&self.m[i] * p.beta1)? + (&g * (1.0 - p.beta1))?)?;
            let v = ((&self.v[i] * p.beta2)? + (g.sqr()? * (1.0 - p.beta2))?)?;
            let m_hat = (&m / c1)?;
            let v_hat = (&v / c2)?;
            let theta = var.as_tensor();
            let decayed = (theta * (1.0 - lr * p.weight_decay))?;
            let update = (m_hat / (v_hat.sqrt()? + p.eps)?)?;
            let next = (decayed - (update * lr)?)?;
            var.set(&next.detach())?;
            self.m[i] = m.detach();
            self.v[i] = v.detach();
        }
        Ok(())
    }

    /// The moments as named tensors (`m.NAME`, `v.NAME`) plus the step count (`t`), for a
    /// checkpoint.
    pub fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            out.insert(format!("m.{name}"), self.m[i].clone());
            out.insert(format!("v.{name}"), self.v[i].clone());
        }
        out.insert(
            "t".to_string(),
            Tensor::new(&[self.t as u32], &Device::Cpu)?,
        );
        Ok(out)
    }

    /// Restores moments saved by [`AdamW::state`].
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        for (i, (name, var)) in self.vars.iter().enumerate() {
            for (kind, slot) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                let t = state
                    .get(&format!("{kind}.{name}"))
                    .ok_or_else(|| candle_core::Error::Msg(format!("no `{kind}.{name}`")))?;
                *slot = t
                    .to_dtype(var.dtype())?
                    .to_device(var.device())?
                    .reshape(var.shape())?;
            }
        }
        let t = state
            .get("t")
            .ok_or_else(|| candle_core::Error::Msg("no `t`".into()))?;
        self.t = t.to_dtype(DType::U32)?.to_vec1::<u32>()?[0] as usize;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One step against the closed form: with g constant, the first update is lr·sign(g)
    /// (bias-corrected m/√v = g/|g|), minus the decay.
    #[test]
    fn first_step_is_lr_times_sign() {
        let var = Var::new(&[1.0f32, -2.0], &Device::Cpu).unwrap();
        let mut opt = AdamW::new(
            vec![("w".into(), var.clone())],
            AdamWParams {
                weight_decay: 0.1,
                eps: 0.0,
                ..Default::default()
            },
        )
        .unwrap();
        let g = Tensor::new(&[0.5f32, -3.0], &Device::Cpu).unwrap();
        opt.step(&HashMap::from([("w".to_string(), g)]), 0.01)
            .unwrap();
        let got = var.as_tensor().to_vec1::<f32>().unwrap();
        let want = [1.0 * (1.0 - 0.001) - 0.01, -2.0 * (1.0 - 0.001) + 0.01];
        for (a, b) in got.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{got:?} vs {want:?}");
        }
        let state = opt.state().unwrap();
        let mut again = AdamW::new(vec![("w".into(), var.clone())], opt.params).unwrap();
        again.load_state(&state).unwrap();
        assert_eq!(again.steps(), 1);
    }
}
