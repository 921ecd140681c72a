//! Synthetic JPEG files of exact sizes for the image endpoint's tests and benchmarks.
//!
//! PHR-07 only streams bytes and checks sizes, so the seed does not need real pictures, only files that look
//! like JPEGs to anything that sniffs them: SOI, a JFIF APP0 segment, comment (COM) segments carrying a label and
//! deterministic filler up to the requested size, and EOI. The same label and size always give the same bytes.

/// Start of image, JFIF APP0 header (16-byte segment + marker), end of image.
const SOI: [u8; 2] = [0xFF, 0xD8];
const APP0_JFIF: [u8; 18] =
    [0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00];
const EOI: [u8; 2] = [0xFF, 0xD9];
/// A COM segment is the marker (2 bytes), a length (2 bytes, counting itself) and at most 65533 payload bytes.
const MAX_SEGMENT: usize = 4 + 65_533;
const MIN_SEGMENT: usize = 4;

/// The smallest size [`synthetic_jpeg`] can produce.
pub const MIN_JPEG_BYTES: usize = SOI.len() + APP0_JFIF.len() + EOI.len();

/// A JPEG-shaped byte string of exactly `size` bytes (at least [`MIN_JPEG_BYTES`]), labelled with `label`.
pub fn synthetic_jpeg(label: &str, size: usize) -> Vec<u8> {
    let size = size.max(MIN_JPEG_BYTES);
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&SOI);
    out.extend_from_slice(&APP0_JFIF);
    let mut remaining = size - MIN_JPEG_BYTES;
    let mut filler = Filler::new(label);
    let mut first = true;
    while remaining > 0 {
        let mut segment = remaining.min(MAX_SEGMENT);
        if remaining - segment > 0 && remaining - segment < MIN_SEGMENT {
            segment -= MIN_SEGMENT; // leave room for a last segment of at least the minimum size
        }
        if segment < MIN_SEGMENT {
            // Only when the whole filler is under four bytes (no segment fits): pad with zero bytes.
            out.extend(std::iter::repeat_n(0x00, segment));
            break;
        }
        let payload = segment - 4;
        out.extend_from_slice(&[0xFF, 0xFE]);
        out.extend_from_slice(&u16::try_from(payload + 2).unwrap_or(u16::MAX).to_be_bytes());
        let start = out.len();
        if first {
            let text = label.as_bytes();
            out.extend_from_slice(&text[..text.len().min(payload)]);
            first = false;
        }
        let written = out.len() - start;
        out.extend((0..payload - written).map(|_| filler.next_byte()));
        remaining -= segment;
    }
    out.extend_from_slice(&EOI);
    out
}

/// A deterministic byte source (xorshift64*) seeded from the label; never yields 0xFF, so no filler byte can
/// look like a marker.
struct Filler(u64);

impl Filler {
    fn new(label: &str) -> Self {
        let seed =
            label.bytes().fold(0x9E37_79B9_7F4A_7C15_u64, |acc, b| (acc ^ u64::from(b)).wrapping_mul(0x100_0000_01B3));
        Self(seed | 1)
    }

    fn next_byte(&mut self) -> u8 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let byte = (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8;
        byte.min(0xFE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_exact_and_markers_are_in_place() {
        for size in [
            MIN_JPEG_BYTES,
            MIN_JPEG_BYTES + 1,
            MIN_JPEG_BYTES + 3,
            MIN_JPEG_BYTES + 4,
            2048,
            65_559,
            65_560,
            65_561,
            65_562,
            65_563,
            5 * 1024 * 1024,
            5 * 1024 * 1024 + 1,
        ] {
            let bytes = synthetic_jpeg("F001/P0001/1", size);
            assert_eq!(bytes.len(), size, "size {size}");
            assert_eq!(&bytes[..2], &SOI);
            assert_eq!(&bytes[2..4], &[0xFF, 0xE0]);
            assert_eq!(&bytes[size - 2..], &EOI);
        }
    }

    #[test]
    fn same_label_same_bytes_other_label_other_bytes() {
        assert_eq!(synthetic_jpeg("a", 4096), synthetic_jpeg("a", 4096));
        assert_ne!(synthetic_jpeg("a", 4096), synthetic_jpeg("b", 4096));
    }
}
