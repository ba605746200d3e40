//! Which compute device libtorch sees: the first thing a user wants to know before training, and
//! the check that the libtorch link (CUDA kept linked, see build.rs) is right on a GPU machine.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct DeviceInfo {
    pub cuda_available: bool,
    pub cuda_devices: i64,
    pub cudnn_available: bool,
    /// The device training would use by default: `cuda:0` or `cpu`.
    pub default_device: String,
    /// libtorch's CPU thread count.
    pub cpu_threads: i32,
}

pub fn probe() -> DeviceInfo {
    let cuda_available = tch::Cuda::is_available();
    DeviceInfo {
        cuda_available,
        cuda_devices: tch::Cuda::device_count(),
        cudnn_available: tch::Cuda::cudnn_is_available(),
        default_device: if cuda_available {
            "cuda:0".into()
        } else {
            "cpu".into()
        },
        cpu_threads: tch::get_num_threads(),
    }
}

/// Runs a tiny computation on the default device, proving libtorch works end to end.
pub fn smoke_test() -> anyhow::Result<f64> {
    let device = tch::Device::cuda_if_available();
    let a = tch::Tensor::f_ones([64, 64], (tch::Kind::Float, device))?;
    let s = a.f_matmul(&a)?.f_sum(tch::Kind::Double)?;
    Ok(s.f_double_value(&[])?)
}

impl std::fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.cuda_available {
            write!(
                f,
                "CUDA: {} device(s), cuDNN {}",
                self.cuda_devices,
                if self.cudnn_available { "yes" } else { "no" }
            )?;
        } else {
            write!(f, "CUDA: not available (training runs on the CPU)")?;
        }
        write!(
            f,
            "; default device {}; {} CPU threads",
            self.default_device, self.cpu_threads
        )
    }
}
