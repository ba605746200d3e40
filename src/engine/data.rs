//! Images -> tensors. Pixels always come through `dataset::probe::decode`, so EXIF orientation
//! is applied here as everywhere else.

use image::{imageops::FilterType, DynamicImage};
use tch::{Kind, Tensor};

/// Evaluation preprocessing, as torchvision's usual `Resize(size / 0.875)` + `CenterCrop(size)`:
/// `[3, size, size]` float, normalised with `mean` / `std` (per channel, on [0, 1] values).
pub fn eval_tensor(img: &DynamicImage, size: u32, mean: [f64; 3], std: [f64; 3]) -> Tensor {
    let crop = center_square(img, loupe::train::config::frame_side(size), size);
    let t = Tensor::from_slice(crop.as_raw())
        .view([i64::from(size), i64::from(size), 3])
        .permute([2, 0, 1])
        .to_kind(Kind::Float)
        / 255.0;
    let mean = Tensor::from_slice(&mean)
        .view([3, 1, 1])
        .to_kind(Kind::Float);
    let std = Tensor::from_slice(&std)
        .view([3, 1, 1])
        .to_kind(Kind::Float);
    (t - mean) / std
}

/// The short side resized to `short` (bilinear), then the centre `size` x `size` square, RGB8.
pub fn center_square(img: &DynamicImage, short: u32, size: u32) -> image::RgbImage {
    let short = short.max(size);
    let (w, h) = (
        u64::from(img.width().max(1)),
        u64::from(img.height().max(1)),
    );
    let (nw, nh) = if w <= h {
        (short, (h * u64::from(short)).div_ceil(w) as u32)
    } else {
        ((w * u64::from(short)).div_ceil(h) as u32, short)
    };
    let resized = img.resize_exact(nw, nh, FilterType::Triangle).to_rgb8();
    let (x0, y0) = ((resized.width() - size) / 2, (resized.height() - size) / 2);
    image::imageops::crop_imm(&resized, x0, y0, size, size).to_image()
}
