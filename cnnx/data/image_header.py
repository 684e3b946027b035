"""An encoded image's pixel count from its header, in TensorFlow ops, before it is decoded.

A small file can decode to a huge image (a "decompression bomb": a 443 KB PNG of 400
megapixels takes 8.8 GB to decode). Pillow refuses images above twice its
`Image.MAX_IMAGE_PIXELS` (`DecompressionBombError`, 179 megapixels), and torchvision's
`ImageFolder` with it; `tf.io.decode_image` has no limit, so the folder source checks the
header where it reads a file (`check_pixels`), and a refused image is an unreadable file like
any other (`cnnx.data.pipeline`: skipped and counted, or an error, by `data.on_corrupt`).

Headers read (what `tf.io.decode_image` decodes): JPEG (`tf.image.extract_jpeg_shape`), PNG
(IHDR), GIF (logical screen), BMP (BITMAPINFOHEADER and the old 12-byte core header), WebP
(VP8, VP8L, VP8X). Other bytes count 0 pixels and are left to the decoder.
"""

MAX_IMAGE_PIXELS = 2 * 89_478_485  # Pillow's DecompressionBombError threshold

_HEAD = 32  # header bytes read (the WebP VP8X size ends at byte 30)


def _uint(head, start: int, size: int, big_endian: bool = False):
    """The unsigned integer of `size` bytes at `start` of `head` (an int64 scalar)."""
    import tensorflow as tf

    raw = tf.cast(tf.io.decode_raw(tf.strings.substr(head, start, size), tf.uint8), tf.int64)
    shifts = tf.range(size, dtype=tf.int64) * 8
    if big_endian:
        shifts = tf.reverse(shifts, [0])
    return tf.reduce_sum(tf.bitwise.left_shift(raw, shifts))


def pixels(data):
    """Width x height that the header of the encoded image `data` (a scalar string) declares;
    0 when the format is none of those read (see the module docstring)."""
    import tensorflow as tf

    head = tf.strings.join([tf.strings.substr(data, 0, _HEAD), b"\0" * _HEAD])  # never short

    def starts(prefix: bytes, at: int = 0):
        return tf.equal(tf.strings.substr(head, at, len(prefix)), prefix)

    def bmp():
        core = tf.equal(_uint(head, 14, 4), 12)  # OS/2 core header: 16-bit sizes
        w = tf.where(core, _uint(head, 18, 2), _uint(head, 18, 4))
        h = tf.where(core, _uint(head, 20, 2), _uint(head, 22, 4))
        h = tf.where(h >= 2**31, 2**32 - h, h)  # negative: a top-down bitmap
        return w * h

    def webp():
        vp8l = _uint(head, 21, 4)
        sizes = {
            b"VP8 ": (_uint(head, 26, 2) % 2**14) * (_uint(head, 28, 2) % 2**14),
            b"VP8L": (vp8l % 2**14 + 1) * ((vp8l // 2**14) % 2**14 + 1),
            b"VP8X": (_uint(head, 24, 3) + 1) * (_uint(head, 27, 3) + 1),
        }
        out = tf.constant(0, tf.int64)
        for chunk, size in sizes.items():
            out = tf.where(starts(chunk, 12), size, out)
        return out

    def jpeg():
        return tf.reduce_prod(tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.int64))

    zero = lambda: tf.constant(0, tf.int64)  # noqa: E731
    return tf.case(
        [
            (tf.image.is_jpeg(data), jpeg),
            (
                starts(b"\x89PNG\r\n\x1a\n"),
                lambda: _uint(head, 16, 4, True) * _uint(head, 20, 4, True),
            ),
            (starts(b"GIF"), lambda: _uint(head, 6, 2) * _uint(head, 8, 2)),
            (starts(b"BM"), bmp),
            (tf.logical_and(starts(b"RIFF"), starts(b"WEBP", 8)), webp),
        ],
        default=zero,
        exclusive=False,
    )


def check_pixels(data):
    """`data` unchanged, after an assertion that it declares at most MAX_IMAGE_PIXELS pixels
    (an `InvalidArgumentError` when read, caught per example by the pipelines)."""
    import tensorflow as tf

    check = tf.debugging.assert_less_equal(
        pixels(data),
        tf.constant(MAX_IMAGE_PIXELS, tf.int64),
        message=f"image above {MAX_IMAGE_PIXELS} pixels (a decompression bomb?)",
    )
    with tf.control_dependencies([check]):
        return tf.identity(data)
