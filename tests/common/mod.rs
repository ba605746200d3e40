//! Real image files for tests, written by the real encoders (and a few crafted by hand where the
//! point is a broken or hostile header). Shared by the test binaries in `tests/`.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use image::{ImageBuffer, Luma, Rgb, RgbImage, Rgba};

/// A deterministic, non-flat picture, so that JPEG and PNG produce realistic streams.
pub fn pattern(w: u32, h: u32, seed: u8) -> RgbImage {
    ImageBuffer::from_fn(w, h, |x, y| {
        let v = (x * 7 + y * 13) as u8 ^ seed.wrapping_mul(31);
        Rgb([v, v.wrapping_add(seed), 255 - v])
    })
}

pub fn write_png(path: &Path, w: u32, h: u32, seed: u8) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    pattern(w, h, seed)
        .save_with_format(path, image::ImageFormat::Png)
        .unwrap();
}

pub fn write_jpeg(path: &Path, w: u32, h: u32, seed: u8) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    pattern(w, h, seed)
        .save_with_format(path, image::ImageFormat::Jpeg)
        .unwrap();
}

fn jpeg_bytes(w: u16, h: u16, seed: u8, exif_orientation: Option<u16>) -> Vec<u8> {
    let img = pattern(u32::from(w), u32::from(h), seed);
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, 90);
    if let Some(o) = exif_orientation {
        // "Exif\0\0" + big-endian TIFF header + IFD0 with one entry: Orientation (0x0112), SHORT.
        let mut exif = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
        exif.extend_from_slice(&o.to_be_bytes());
        exif.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        enc.add_app_segment(1, exif).unwrap();
    }
    enc.encode(img.as_raw(), w, h, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    out
}

/// A JPEG stored `w`x`h` whose EXIF says "rotate 90° clockwise" (orientation 6).
pub fn write_exif_rotated_jpeg(path: &Path, w: u16, h: u16) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, jpeg_bytes(w, h, 3, Some(6))).unwrap();
}

pub fn write_cmyk_jpeg(path: &Path, w: u16, h: u16) {
    let data: Vec<u8> = (0..u32::from(w) * u32::from(h))
        .flat_map(|i| [(i % 200) as u8, 40, 90, 10])
        .collect();
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 90)
        .encode(&data, w, h, jpeg_encoder::ColorType::Cmyk)
        .unwrap();
    fs::write(path, out).unwrap();
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
}

/// A valid-looking PNG header claiming `w`x`h` pixels, with almost no data: a decompression bomb
/// as far as a naive reader is concerned.
pub fn write_png_header_only(path: &Path, w: u32, h: u32) {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    png_chunk(&mut out, b"IEND", &[]);
    fs::write(path, out).unwrap();
}

/// What the bad-file collection should scan to: relative path -> expected outcome.
pub struct Expect {
    pub samples: Vec<(&'static str, &'static str)>,
    pub rejected: Vec<(&'static str, &'static str)>,
    pub ignored: Vec<&'static str>,
    pub classes: Vec<&'static str>,
}

/// The bad-file collection of the foundation issue, in ImageFolder layout under `root`.
pub fn bad_collection(root: &Path) -> Expect {
    let p = |rel: &str| -> PathBuf {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        path
    };
    // Good files of many kinds.
    write_jpeg(&p("cats/ok.jpg"), 64, 48, 1);
    write_png(&p("cats/deep/deeper/nested.png"), 20, 30, 2);
    write_cmyk_jpeg(&p("cats/cmyk.jpg"), 32, 16);
    ImageBuffer::from_fn(17, 9, |x, y| Rgb([x as u16 * 3000, y as u16 * 7000, 65535]))
        .save(p("dogs/sixteen_bit.png"))
        .unwrap();
    ImageBuffer::from_fn(12, 12, |x, _| Rgba([200u8, 10, 10, (x * 20) as u8]))
        .save(p("dogs/rgba.png"))
        .unwrap();
    image::DynamicImage::ImageRgb8(pattern(10, 10, 4))
        .save_with_format(p("dogs/palette.gif"), image::ImageFormat::Gif)
        .unwrap();
    image::DynamicImage::ImageRgb8(pattern(24, 24, 5))
        .save_with_format(p("dogs/lossless.webp"), image::ImageFormat::WebP)
        .unwrap();
    write_exif_rotated_jpeg(&p("dogs/rotated.jpg"), 40, 20);
    ImageBuffer::from_pixel(1, 1, Luma([7u8]))
        .save(p("dogs/one.png"))
        .unwrap();
    ImageBuffer::from_pixel(1, 4000, Luma([7u8]))
        .save(p("dogs/strip.png"))
        .unwrap();
    fs::write(p("dogs/actually_jpeg.png"), jpeg_bytes(16, 16, 9, None)).unwrap();
    write_jpeg(&p("고양이/한국어 이름.jpg"), 16, 16, 6);
    write_png(&p("cats/with spaces é.png"), 8, 8, 7);

    // Bad files.
    fs::write(p("cats/zero.jpg"), b"").unwrap();
    let full = jpeg_bytes(64, 64, 8, None);
    fs::write(p("cats/truncated.jpg"), &full[..full.len() / 2]).unwrap();
    fs::write(p("cats/notes.jpg"), b"these are my notes, not a picture\n").unwrap();
    fs::write(p("cats/photo.heic"), b"\0\0\0\x18ftypheic\0\0\0\0mif1heic").unwrap();
    write_png_header_only(&p("dogs/bomb.png"), 100_000, 100_000);
    write_png(&p("stray.png"), 8, 8, 9);
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("/nonexistent/target.jpg", p("dogs/broken_link.jpg")).unwrap();
        std::os::unix::fs::symlink("..", p("cats/loop")).unwrap();
    }
    fs::create_dir_all(p("empty_class/x")).unwrap();
    fs::remove_dir(p("empty_class/x")).unwrap();

    // Junk.
    fs::write(p("cats/Thumbs.db"), b"junk").unwrap();
    fs::write(p("dogs/.DS_Store"), b"junk").unwrap();
    fs::write(p("cats/ok.jpg.json"), b"{}").unwrap();
    fs::write(p("README.txt"), b"about this data").unwrap();

    Expect {
        samples: vec![
            ("cats/ok.jpg", "cats"),
            ("cats/deep/deeper/nested.png", "cats"),
            ("cats/cmyk.jpg", "cats"),
            ("cats/with spaces é.png", "cats"),
            ("dogs/sixteen_bit.png", "dogs"),
            ("dogs/rgba.png", "dogs"),
            ("dogs/palette.gif", "dogs"),
            ("dogs/lossless.webp", "dogs"),
            ("dogs/rotated.jpg", "dogs"),
            ("dogs/one.png", "dogs"),
            ("dogs/strip.png", "dogs"),
            ("dogs/actually_jpeg.png", "dogs"),
            ("고양이/한국어 이름.jpg", "고양이"),
        ],
        rejected: vec![
            ("cats/zero.jpg", "empty"),
            ("cats/truncated.jpg", "truncated"),
            ("cats/notes.jpg", "not-an-image"),
            ("cats/photo.heic", "unsupported"),
            ("dogs/bomb.png", "too-large"),
            ("stray.png", "no-class"),
            ("dogs/broken_link.jpg", "broken-link"),
            ("cats/loop", "symlink-loop"),
        ],
        ignored: vec![
            "cats/Thumbs.db",
            "dogs/.DS_Store",
            "cats/ok.jpg.json",
            "README.txt",
        ],
        classes: vec!["cats", "dogs", "empty_class", "고양이"],
    }
}

/// Real photos for the pretrained network: 20 variants (crop, mirror, brightness) of each of
/// three ImageNet photos, one class per photo; variant 7 of each is filed under the next class.
pub fn planted_photos(root: &Path) -> Vec<(String, &'static str)> {
    let photos = Path::new(env!("CARGO_MANIFEST_DIR")).join(".testdata/imagenet20");
    assert!(
        photos.join(".complete").exists(),
        "run scripts/bootstrap.sh test first (fetches the photos)"
    );
    let names = ["dog", "bus", "fruit"];
    let files = [
        "imagenet_00_243.jpg",
        "imagenet_01_559.jpg",
        "imagenet_02_438.jpg",
    ];
    let mut planted = Vec::new();
    for (c, file) in files.iter().enumerate() {
        let img = image::open(photos.join(file)).unwrap().to_rgb8();
        let (w, h) = img.dimensions();
        for k in 0..20u32 {
            let side = w.min(h) * (70 + k % 4 * 10) / 100;
            let (x0, y0) = ((w - side) * (k % 5) / 4, (h - side) * (k / 5 % 4) / 3);
            let mut v = image::imageops::crop_imm(&img, x0, y0, side, side).to_image();
            if k % 2 == 1 {
                v = image::imageops::flip_horizontal(&v);
            }
            let v = image::imageops::colorops::brighten(&v, k as i32 * 3 - 30);
            let folder = if k == 7 { names[(c + 1) % 3] } else { names[c] };
            std::fs::create_dir_all(root.join(folder)).unwrap();
            let rel = format!("{folder}/{}_{k:02}.jpg", names[c]);
            image::imageops::resize(&v, 96, 96, image::imageops::FilterType::Triangle)
                .save(root.join(&rel))
                .unwrap();
            if k == 7 {
                planted.push((rel, names[c]));
            }
        }
    }
    planted
}

/// `per_class` noisy 16x16 images of three colours (blue, green, red), one folder each; `offset`
/// makes a different set of the same classes.
pub fn colour_images(root: &Path, per_class: usize, offset: u32) {
    for (name, c) in [
        ("blue", [40u8, 40, 200]),
        ("green", [40, 200, 40]),
        ("red", [200, 40, 40]),
    ] {
        fs::create_dir_all(root.join(name)).unwrap();
        for k in 0..per_class {
            let img = ImageBuffer::from_fn(16, 16, |x, y| {
                let n = ((x * 31 + y * 17 + (k as u32 + offset) * 13) % 60) as u8;
                Rgb([
                    c[0].saturating_add(n),
                    c[1].saturating_add(n),
                    c[2].saturating_add(n),
                ])
            });
            img.save(root.join(name).join(format!("{k:02}.png")))
                .unwrap();
        }
    }
}

/// One photo of a composite-label dataset: a person (the group), and a value per attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Photo {
    pub path: String,
    pub id: String,
    pub mask: &'static str,
    pub gender: &'static str,
    pub age: &'static str,
}

pub const MASKS: [&str; 3] = ["incorrect", "not_wear", "wear"];
pub const GENDERS: [&str; 2] = ["female", "male"];
pub const AGES: [&str; 3] = ["<30", "30-59", "60+"];

/// The mask competition in small: `people` people x 7 photos (32x32 PNGs under `root/images`),
/// five with the mask worn, one incorrectly, one not at all; gender and age are the person's.
/// Every attribute paints its own band (mask the top, gender the middle, age the bottom) in a
/// colour per value, with noise that differs per photo, so a small network can learn each
/// attribute and a pretrained one can tell them apart. Every fifth person is 60+. Returns the
/// true labels; [`write_labels`] writes them (after a test has planted its errors).
pub fn composite_photos(root: &Path, people: usize) -> Vec<Photo> {
    const MASK_RGB: [[u8; 3]; 3] = [[220, 60, 60], [60, 60, 220], [60, 200, 60]];
    const GENDER_RGB: [[u8; 3]; 2] = [[230, 200, 40], [40, 200, 230]];
    const AGE_RGB: [[u8; 3]; 3] = [[200, 200, 200], [120, 60, 160], [30, 30, 30]];
    fs::create_dir_all(root.join("images")).unwrap();
    let mut photos = Vec::new();
    for p in 0..people {
        let (gender, age) = (p % 2, if p % 5 == 4 { 2 } else { p % 3 % 2 });
        for k in 0..7usize {
            let mask = match k {
                5 => 0,
                6 => 1,
                _ => 2,
            };
            let img = ImageBuffer::from_fn(32, 32, |x, y| {
                let c = match y {
                    0..=10 => MASK_RGB[mask],
                    11..=20 => GENDER_RGB[gender],
                    _ => AGE_RGB[age],
                };
                let n = ((x * 31 + y * 17 + (p * 7 + k) as u32 * 13) % 50) as u8;
                Rgb([
                    c[0].saturating_add(n),
                    c[1].saturating_add(n),
                    c[2].saturating_add(n),
                ])
            });
            let path = format!("images/p{p:03}_{k}.png");
            img.save(root.join(&path)).unwrap();
            photos.push(Photo {
                path,
                id: format!("p{p:03}"),
                mask: MASKS[mask],
                gender: GENDERS[gender],
                age: AGES[age],
            });
        }
    }
    photos
}

/// `root/labels.csv`: path,id,mask,gender,age.
pub fn write_labels(root: &Path, photos: &[Photo]) -> PathBuf {
    let mut text = String::from("path,id,mask,gender,age\n");
    for p in photos {
        text.push_str(&format!(
            "{},{},{},{},{}\n",
            p.path, p.id, p.mask, p.gender, p.age
        ));
    }
    let csv = root.join("labels.csv");
    fs::write(&csv, text).unwrap();
    csv
}

/// The engine binary cargo built beside the tests.
pub fn engine() -> loupe::train::client::Engine {
    loupe::train::client::Engine::at(env!("CARGO_BIN_EXE_loupe-engine"))
}

/// `loupe` with `args`, its output captured.
pub fn loupe(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_loupe"))
        .args(args)
        .output()
        .unwrap()
}

/// How long a test waits for something that must happen before it calls it a hang. Not a
/// timing expectation: what the tests wait for does not depend on speed, only on getting there,
/// so this is set far beyond what a loaded 2-core machine needs.
pub const HANG: std::time::Duration = std::time::Duration::from_secs(900);

pub mod ui;
