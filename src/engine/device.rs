//! Which compute device libtorch sees: the first thing a user wants to know before training, and
//! the check that the libtorch link (CUDA kept linked, see build.rs) is right on a GPU machine.

use tch::Device;

use loupe::train::config::DeviceChoice;
use loupe::train::protocol::DeviceInfo;

/// The device a job asked for, or why it cannot have it.
pub fn pick(choice: DeviceChoice) -> anyhow::Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto => Ok(Device::cuda_if_available()),
        DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
        DeviceChoice::Cuda => anyhow::bail!(
            "--device cuda was asked for, but libtorch sees no CUDA GPU (see `loupe device`)"
        ),
    }
}

/// Whether bfloat16 arithmetic pays on `d`: on a CPU with AVX-512 BF16 (oneDNN's bf16 kernels
/// read half the bytes of f32 and ran EfficientNet-Lite0 1.4x and the label heads' passes 5x
/// faster here; without the instructions bf16 is emulated and slower than f32). GPUs keep f32:
/// no bf16 run on one has been measured.
pub fn fast_bf16(d: Device) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        d == Device::Cpu && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = d;
        false
    }
}

/// A device as people name it: "CPU", "CUDA GPU 0".
pub fn name(d: Device) -> String {
    match d {
        Device::Cpu => "CPU".into(),
        Device::Cuda(i) => format!("CUDA GPU {i}"),
        Device::Mps => "Apple GPU (MPS)".into(),
        Device::Vulkan => "Vulkan".into(),
    }
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
        smoke_test: smoke_test().map_err(|e| format!("{e:#}")),
    }
}

/// Runs a tiny computation on the default device, proving libtorch works end to end.
fn smoke_test() -> anyhow::Result<f64> {
    let device = Device::cuda_if_available();
    let a = tch::Tensor::f_ones([64, 64], (tch::Kind::Float, device))?;
    let s = a.f_matmul(&a)?.f_sum(tch::Kind::Double)?;
    Ok(s.f_double_value(&[])?)
}
