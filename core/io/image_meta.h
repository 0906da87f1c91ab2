#pragma once
// What a photo file says about its pixels beyond the pixels: the EXIF orientation (phones store
// the sensor's rows and a tag saying how to turn them), the ICC colour profile, and the EXIF
// block itself, so that an answer can carry them over. Read from and written into JPEG (APP1
// "Exif", APP2 "ICC_PROFILE"), PNG (eXIf, iCCP) and WebP (EXIF, ICCP; core/io/webp_codec.h).
// Every offset read from a file is bounds-checked: a hostile EXIF block yields "no orientation",
// never a read past its end.
#include <cstdint>
#include <string>

#include "core/io/image.h"

namespace pconv {

// Parsed from the file; empty strings when the file has none.
struct ImageMetadata {
  std::string icc;   // the ICC profile's bytes
  std::string exif;  // the TIFF structure ("II*\0" or "MM\0*" first), with orientation reset to 1
  int orientation = 1;  // EXIF tag 0x0112 as found (1..8; anything else reads as 1)
};

// EXIF's orientation in a TIFF block (1 when absent or malformed).
int exif_orientation(const std::string& tiff);
// The same block with the orientation tag set to 1 (the pixels have been turned); unchanged
// when it has no such tag.
std::string exif_reset_orientation(std::string tiff);

// The stored pixels turned as `orientation` says, so that they are what a viewer shows (PIL's
// ImageOps.exif_transpose): 2 mirror, 3 rotate 180°, 4 flip, 5 transpose, 6 rotate 90°
// clockwise, 7 transverse, 8 rotate 90° counter-clockwise; 5–8 swap width and height.
ImageU8 apply_orientation(const ImageU8& img, int orientation);

// Metadata of a JPEG or PNG file in memory (other formats: nothing).
ImageMetadata read_jpeg_metadata(const std::string& jpeg);
ImageMetadata read_png_metadata(const std::string& png);

// The file with the profile and the EXIF block added after its first segment/chunk (JPEG:
// after SOI and the JFIF APP0; PNG: after IHDR). A profile over what one file may hold in
// segments, or an EXIF block over one JPEG segment (64 KiB), is left out.
std::string add_jpeg_metadata(const std::string& jpeg, const ImageMetadata& meta);
std::string add_png_metadata(const std::string& png, const ImageMetadata& meta);

}  // namespace pconv
