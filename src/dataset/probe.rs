//! One file on disk -> either the facts about an image (from its header) or the reason it is not
//! a usable sample. Headers only: the scan must stay fast on 100,000 files, and a
//! decompression-bomb header must be refused before anything the size of its pixels is allocated.

use std::fmt;
use std::fs::File;
use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::path::Path;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};
use serde::{Deserialize, Serialize};

/// Images with more pixels than this are refused (PIL's decompression-bomb error threshold,
/// 2 x 89,478,485): a 100000x100000 header would ask for 40 GB of RGBA.
pub const MAX_PIXELS: u64 = 178_956_970;

/// Whole files up to this size are read in one go; bigger ones get a head and a tail read.
const WHOLE_FILE_LIMIT: u64 = 256 * 1024;
const HEAD_LEN: usize = 64 * 1024;
/// Where end-of-image markers are looked for. JPEG's EOI may be followed by a few bytes of
/// camera padding; inside entropy-coded data 0xFF is always stuffed, so `FF D9` is unambiguous.
const TAIL_LEN: usize = 4 * 1024;

/// Extensions of files that should be images. Anything else under the dataset root is junk
/// (sidecar text, `Thumbs.db`, `.DS_Store`) and is counted, not probed.
const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "jpe", "jfif", "png", "apng", "gif", "bmp", "dib", "tif", "tiff", "webp", "ico",
    "pnm", "pbm", "pgm", "ppm", "pam", "tga", "dds", "hdr", "exr", "qoi", "ff",
    // Image formats the `image` crate cannot decode: reported as unsupported, not ignored.
    "avif", "heic", "heif", "jxl", "svg", "psd", "raw", "cr2", "nef", "arw", "dng", "jp2",
];

/// What identifies a file's content for finding exact duplicates: XXH3-128. Not a
/// cryptographic hash (nobody is forging duplicates here), and ten times faster than one on
/// the small files datasets are made of; two different files collide with a chance of about
/// n^2 / 2^129.
pub type ContentHash = u128;

pub fn content_hash(bytes: &[u8]) -> ContentHash {
    xxhash_rust::xxh3::xxh3_128(bytes)
}

/// Whether a file name looks like an image that the scan should look at.
pub fn has_image_extension(path: &Path) -> bool {
    // On the bytes of the name, not `Path::extension`: parsing components from the back was a
    // tenth of a 100,000-file scan's own time.
    let bytes = path.as_os_str().as_encoded_bytes();
    let name = bytes.rsplit(|&b| b == b'/').next().unwrap_or(bytes);
    let Some(dot) = name.iter().rposition(|&b| b == b'.') else {
        return false;
    };
    let ext = &name[dot + 1..];
    dot > 0
        && IMAGE_EXTENSIONS
            .iter()
            .any(|x| x.as_bytes().eq_ignore_ascii_case(ext))
}

/// Why a file is not a sample. Serialized as a short kebab-case word for scripts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "detail")]
pub enum Reason {
    /// Zero bytes.
    Empty,
    /// The header is fine but the file ends early.
    Truncated,
    /// The content matches no image format (text saved as .jpg, ...).
    NotAnImage,
    /// A real image format that this build cannot decode (HEIC, AVIF, SVG, PSD, ...).
    Unsupported(String),
    /// The header is damaged or inconsistent.
    Corrupt(String),
    /// Width x height over [`MAX_PIXELS`].
    TooLarge { width: u32, height: u32 },
    /// A symbolic link whose target does not exist.
    BrokenLink,
    /// A directory link that points back to one of its ancestors.
    SymlinkLoop,
    /// An image directly in the dataset root: ImageFolder has no class for it.
    NoClass,
    /// A CSV row names a file that does not exist.
    Missing,
    /// A CSV row whose label cell is empty.
    NoLabel,
    /// The operating system refused to read it (permissions, I/O error).
    Io(String),
}

impl Reason {
    /// A stable short key, for grouping and JSON.
    pub fn key(&self) -> &'static str {
        match self {
            Reason::Empty => "empty",
            Reason::Truncated => "truncated",
            Reason::NotAnImage => "not-an-image",
            Reason::Unsupported(_) => "unsupported",
            Reason::Corrupt(_) => "corrupt",
            Reason::TooLarge { .. } => "too-large",
            Reason::BrokenLink => "broken-link",
            Reason::SymlinkLoop => "symlink-loop",
            Reason::NoClass => "no-class",
            Reason::Missing => "missing",
            Reason::NoLabel => "no-label",
            Reason::Io(_) => "io-error",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Empty => write!(f, "empty file (0 bytes)"),
            Reason::Truncated => write!(f, "truncated: the file ends before the image does"),
            Reason::NotAnImage => write!(f, "not an image: the content matches no image format"),
            Reason::Unsupported(what) => write!(f, "unsupported format: {what}"),
            Reason::Corrupt(what) => write!(f, "corrupt header: {what}"),
            Reason::TooLarge { width, height } => write!(
                f,
                "too large: {width}x{height} is over the limit of {MAX_PIXELS} pixels"
            ),
            Reason::BrokenLink => write!(f, "broken link: its target does not exist"),
            Reason::SymlinkLoop => write!(f, "symbolic link loop: skipped"),
            Reason::NoClass => write!(f, "no class: the file sits at the dataset root"),
            Reason::Missing => write!(f, "listed in the CSV but not found on disk"),
            Reason::NoLabel => write!(f, "the CSV row has an empty label"),
            Reason::Io(msg) => write!(f, "cannot be read: {msg}"),
        }
    }
}

/// What the header tells about an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    pub format: ImageFormat,
    /// Width and height as displayed, i.e. after the EXIF orientation is applied.
    pub width: u32,
    pub height: u32,
    pub color: image::ColorType,
    /// EXIF orientation, 1..=8 (1 = as stored).
    pub orientation: u8,
    pub bytes: u64,
    /// Hash of the file's content, when the scan was asked for it and read the whole file
    /// anyway (files up to 256 KiB): duplicates found without a second pass over the files.
    pub content_hash: Option<ContentHash>,
}

impl ImageInfo {
    pub fn format_name(&self) -> &'static str {
        format_name(self.format)
    }

    pub fn color_name(&self) -> &'static str {
        color_name(self.color)
    }
}

pub fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "JPEG",
        ImageFormat::Png => "PNG",
        ImageFormat::Gif => "GIF",
        ImageFormat::WebP => "WebP",
        ImageFormat::Bmp => "BMP",
        ImageFormat::Tiff => "TIFF",
        ImageFormat::Ico => "ICO",
        ImageFormat::Pnm => "PNM",
        ImageFormat::Tga => "TGA",
        ImageFormat::Dds => "DDS",
        ImageFormat::Hdr => "HDR",
        ImageFormat::OpenExr => "OpenEXR",
        ImageFormat::Farbfeld => "Farbfeld",
        ImageFormat::Avif => "AVIF",
        ImageFormat::Qoi => "QOI",
        _ => "other",
    }
}

pub fn color_name(color: image::ColorType) -> &'static str {
    use image::ColorType as C;
    match color {
        C::L8 => "grey 8-bit",
        C::La8 => "grey+alpha 8-bit",
        C::Rgb8 => "RGB 8-bit",
        C::Rgba8 => "RGBA 8-bit",
        C::L16 => "grey 16-bit",
        C::La16 => "grey+alpha 16-bit",
        C::Rgb16 => "RGB 16-bit",
        C::Rgba16 => "RGBA 16-bit",
        C::Rgb32F => "RGB float",
        C::Rgba32F => "RGBA float",
        _ => "other",
    }
}

/// Reads the header of the file at `path` (and its last bytes, to catch truncation).
/// Reads the header of the image at `path` (or the whole file, when it is small or its format
/// needs it). With `hash`, a file read whole also gets its [`ImageInfo::content_hash`].
pub fn probe(path: &Path, hash: bool) -> Result<ImageInfo, Reason> {
    let whole = |bytes: &[u8]| {
        probe_whole(bytes, path).map(|mut info| {
            if hash {
                info.content_hash = Some(content_hash(bytes));
            }
            info
        })
    };
    thread_local! {
        // One buffer per I/O thread: no allocation per file on a 100,000-file scan.
        static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; HEAD_LEN]);
    }
    let mut file = File::open(path).map_err(io_reason)?;
    BUF.with_borrow_mut(|buf| {
        let n = read_full(&mut file, buf).map_err(io_reason)?;
        if n == 0 {
            return Err(Reason::Empty);
        }
        if n < buf.len() {
            // Most dataset images are small: the whole file is in hand, one read, no fstat.
            return match whole(&buf[..n]) {
                // Network filesystems may return short reads before the end: look before
                // calling a file truncated.
                Err(Reason::Truncated) if file.metadata().is_ok_and(|m| m.len() > n as u64) => {
                    whole(&std::fs::read(path).map_err(io_reason)?)
                }
                r => r,
            };
        }
        let len = file.metadata().map_err(io_reason)?.len();
        let format = image::guess_format(buf).map_err(|_| unknown_content(path))?;
        // TIFF keeps its directory wherever it likes, often at the end: it needs the whole file.
        if format == ImageFormat::Tiff || len <= WHOLE_FILE_LIMIT {
            let all = std::fs::read(path).map_err(io_reason)?;
            return whole(&all);
        }
        let info = probe_bytes(buf, format, len)?;
        let mut tail = [0u8; TAIL_LEN];
        file.seek(SeekFrom::End(-(TAIL_LEN as i64)))
            .and_then(|_| file.read_exact(&mut tail))
            .map_err(io_reason)?;
        if is_truncated(format, buf, &tail, len) {
            return Err(Reason::Truncated);
        }
        Ok(info)
    })
}

/// Probes a file whose bytes are all in `bytes`.
fn probe_whole(bytes: &[u8], path: &Path) -> Result<ImageInfo, Reason> {
    let format = image::guess_format(bytes).map_err(|_| unknown_content(path))?;
    let len = bytes.len() as u64;
    let info = probe_bytes(bytes, format, len)?;
    if is_truncated(
        format,
        bytes,
        &bytes[bytes.len().saturating_sub(TAIL_LEN)..],
        len,
    ) {
        return Err(Reason::Truncated);
    }
    Ok(info)
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => {
                n += k;
                // A regular file returns less than asked only at its end: stop without the
                // extra read that would confirm it.
                if n < buf.len() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The header facts from the first bytes of a file whose format is known.
fn probe_bytes(head: &[u8], format: ImageFormat, len: u64) -> Result<ImageInfo, Reason> {
    let reader = ImageReader::with_format(Cursor::new(head), format);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| decoder_reason(format, e, head.len() as u64 == len))?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(Reason::Corrupt(format!("{w}x{h} image")));
    }
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(Reason::TooLarge {
            width: w,
            height: h,
        });
    }
    // A broken EXIF block must not make an otherwise fine image unusable.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let exif = orientation_to_exif(orientation);
    let (width, height) = if matches!(exif, 5..=8) {
        (h, w)
    } else {
        (w, h)
    };
    Ok(ImageInfo {
        format,
        width,
        height,
        color: decoder.color_type(),
        orientation: exif,
        bytes: len,
        content_hash: None,
    })
}

fn orientation_to_exif(o: Orientation) -> u8 {
    match o {
        Orientation::NoTransforms => 1,
        Orientation::FlipHorizontal => 2,
        Orientation::Rotate180 => 3,
        Orientation::FlipVertical => 4,
        Orientation::Rotate90FlipH => 5,
        Orientation::Rotate90 => 6,
        Orientation::Rotate270FlipH => 7,
        Orientation::Rotate270 => 8,
    }
}

/// Cheap end-of-file checks for the formats whose end is marked. A download cut short (the
/// common case) loses the marker; a full decode would find more but costs 100x the time.
fn is_truncated(format: ImageFormat, head: &[u8], tail: &[u8], len: u64) -> bool {
    // The end markers sit at (or within bytes of) the end: look from there back.
    match format {
        ImageFormat::Jpeg => !tail.windows(2).rev().any(|w| w == [0xFF, 0xD9]),
        ImageFormat::Png => !tail.windows(4).rev().any(|w| w == b"IEND"),
        ImageFormat::Gif => !tail.iter().rev().any(|&b| b == 0x3B),
        // RIFF and BMP headers state the file size.
        ImageFormat::WebP => {
            head.len() >= 8
                && u64::from(u32::from_le_bytes([head[4], head[5], head[6], head[7]])) + 8 > len
        }
        ImageFormat::Bmp => {
            head.len() >= 6
                && u64::from(u32::from_le_bytes([head[2], head[3], head[4], head[5]])) > len
        }
        _ => false,
    }
}

/// The content matched no format: say "unsupported" for image types we know we cannot read,
/// "not an image" for the rest.
fn unknown_content(path: &Path) -> Reason {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "heic" | "heif" | "jxl" | "svg" | "psd" | "raw" | "cr2" | "nef" | "arw" | "dng" | "jp2"
        | "avif" => Reason::Unsupported(ext.to_ascii_uppercase()),
        _ => Reason::NotAnImage,
    }
}

fn decoder_reason(format: ImageFormat, err: image::ImageError, whole_file: bool) -> Reason {
    use image::ImageError as E;
    match err {
        E::Unsupported(u) => Reason::Unsupported(format!("{} ({u})", format_name(format))),
        E::Limits(_) => Reason::TooLarge {
            width: 0,
            height: 0,
        },
        E::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof && whole_file => {
            Reason::Truncated
        }
        E::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            Reason::Corrupt("header larger than expected".into())
        }
        other => Reason::Corrupt(other.to_string()),
    }
}

pub(crate) fn io_reason(e: io::Error) -> Reason {
    Reason::Io(e.to_string())
}

/// Decodes the whole image with the EXIF orientation applied: the one way pixels are read,
/// so thumbnails, training and export all see the picture the way a photo viewer shows it.
pub fn decode(path: &Path) -> Result<DynamicImage, Reason> {
    let bytes = std::fs::read(path).map_err(io_reason)?;
    decode_bytes(&bytes, path)
}

pub fn decode_bytes(bytes: &[u8], path: &Path) -> Result<DynamicImage, Reason> {
    if bytes.is_empty() {
        return Err(Reason::Empty);
    }
    let format = image::guess_format(bytes).map_err(|_| unknown_content(path))?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 4);
    reader.limits(limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| decoder_reason(format, e, true))?;
    let (w, h) = decoder.dimensions();
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(Reason::TooLarge {
            width: w,
            height: h,
        });
    }
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut img =
        DynamicImage::from_decoder(decoder).map_err(|e| decoder_reason(format, e, true))?;
    img.apply_orientation(orientation);
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_markers_decide_truncation() {
        let jpeg_end = [0x00, 0xFF, 0xD9, 0x00];
        assert!(!is_truncated(ImageFormat::Jpeg, &[], &jpeg_end, 4));
        assert!(is_truncated(ImageFormat::Jpeg, &[], &[0x12, 0xFF, 0x00], 3));
        assert!(!is_truncated(ImageFormat::Png, &[], b"..IEND\xAE", 7));
        // RIFF says 100 bytes follow the 8-byte header, the file has 50.
        let mut riff = b"RIFF".to_vec();
        riff.extend_from_slice(&100u32.to_le_bytes());
        assert!(is_truncated(ImageFormat::WebP, &riff, &[], 50));
        assert!(!is_truncated(ImageFormat::WebP, &riff, &[], 108));
    }

    #[test]
    fn unknown_content_is_unsupported_only_for_known_image_types() {
        assert_eq!(
            unknown_content(Path::new("a/photo.HEIC")),
            Reason::Unsupported("HEIC".into())
        );
        assert_eq!(
            unknown_content(Path::new("a/photo.jpg")),
            Reason::NotAnImage
        );
    }
}
