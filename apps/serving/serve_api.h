#pragma once
// inpaint-serve's HTTP API apart from the sockets: what a request must hold, how it is
// checked, and the JSON the endpoints answer, so that all of it is tested (and can be fuzzed)
// without a server. The API is IOPaint's (https://github.com/Sanster/IOPaint), so its page
// and clients work:
//   POST /api/v1/inpaint        JSON {"image": base64, "mask": base64, optional "hd_strategy",
//                               "hd_strategy_crop_margin", "hd_strategy_crop_trigger_size",
//                               "hd_strategy_resize_limit", "sd_seed"} (or the same fields as
//                               multipart/form-data) → the image in the input's format
//   GET  /api/v1/server-config  what the server accepts
//   GET  /api/v1/model          the model: name, config, device
// Errors are IOPaint's {"error", "detail", "body", "errors"} with 400 (bad request), 413 (too
// large), 503 (busy) and the others docs/serving.md lists.
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "apps/inference/hd_strategy.h"

namespace pconv::serve {

// An error the API answers with: an HTTP status and a one-line message.
struct ApiError : Error {
  int status;
  ApiError(int http_status, const std::string& message) : Error(message), status(http_status) {}
};

struct Limits {
  int64_t max_body_bytes = int64_t(128) << 20;  // whole request body
  int64_t max_pixels = kMaxImagePixels;         // image (and mask) width × height
};

// Bytes a request holds per pixel of its image while it is decoded, inpainted and encoded
// (image and mask decoded, the mask as floats, the composite, the encoder's copy): the peak
// grew by 13.6 bytes per pixel (915 MB) for a flat 8192² PNG with a small hole; rounded up.
constexpr int64_t kRequestBytesPerPixel = 16;

// Called with the bytes a request's images will need, after their headers are read and before
// a pixel is decoded; throws ApiError (413 or 503) when they do not fit.
using Reserve = std::function<void(int64_t bytes)>;

struct InpaintRequest;
// The inpainting a request asks for, run on the model's thread. `cancelled` turns true when
// the request has given up (time limit) or the server is stopping; between passes the work
// stops with inference::Cancelled. May throw ApiError (e.g. 413 when memory is short).
using Inpainter = std::function<ImageU8(const InpaintRequest& request, const std::function<bool()>& cancelled)>;

struct InpaintRequest {
  ImageU8 image;     // RGB, with the alpha channel when the image had one; EXIF orientation applied
  MaskImage mask;    // 1 = known; holes where the mask's grey (alpha ignored) is over 127
  bool had_alpha = false;
  inference::HdOptions hd;
  // What the answer carries over: the input's format (JPEG, PNG or WebP; others answer PNG),
  // lossless or not (WebP), its ICC profile and EXIF (orientation reset to 1).
  ImageFormat format = ImageFormat::Png;
  bool lossless = true;
  std::string icc, exif;
  // pconv's own field: "none" or "transfer" (models/texture_transfer.h); empty when the request
  // does not say, and then the server's --texture applies.
  std::string texture;
  int64_t seed = 42;  // sd_seed, echoed in X-Seed as IOPaint does (-1: a random 1..99999999; pconv's model uses none)
};

// Parses and checks POST /api/v1/inpaint's JSON body. `image` and `mask` are base64 with or
// without a "data:image/...;base64," prefix; unknown fields are ignored (IOPaint's clients send
// many); numbers may come as strings ("128"), as IOPaint's request model accepts them.
// Throws ApiError 400 (not JSON, a field missing or of the wrong type, bad base64, not an
// image, mask and image sizes differ, a bad option) or 413 (over limits.max_pixels).
InpaintRequest parse_inpaint_request(const std::string& body, const Limits& limits,
                                     const inference::HdOptions& defaults, const Reserve& reserve = {});
// The same from multipart/form-data: `image` and `mask` as files (or base64 text), the options
// as text fields.
InpaintRequest parse_inpaint_multipart(const std::string& body, const std::string& boundary, const Limits& limits,
                                       const inference::HdOptions& defaults, const Reserve& reserve = {});

// IOPaint's mask rule: grey by PIL's "L" conversion (alpha ignored), a hole where it is over
// 127. A brush stroke's anti-aliased rim, painted white on a transparent canvas, is a hole.
MaskImage mask_from_grey(const ImageU8& mask);

// The answer's bytes and Content-Type: the input's format (PNG for GIF, BMP, TGA), JPEG at
// `quality`, WebP lossless when the input was, with the input's profile and EXIF.
struct EncodedAnswer {
  std::string bytes, content_type;
};
EncodedAnswer encode_answer(const InpaintRequest& request, const ImageU8& composite, int quality);

// IOPaint's error body: {"error": <kind>, "detail": message, "body": "", "errors": message};
// its web app shows `errors`, other clients `detail`.
std::string error_json(const std::string& message, const std::string& kind = "HTTPException");

// GET /api/v1/model: IOPaint's ModelInfo fields plus pconv's architecture, device and
// texture (what a request that names none gets: the server's --texture, the page's checkbox).
// `name` is what clients show and switch by (a file's stem, never its path).
nlohmann::json model_json(const std::string& name, const PConvUNetConfig& config, const std::string& device,
                          const std::string& texture = "none");

// GET /api/v1/server-config: IOPaint's fields plus, under "pconv", the limits, the HD defaults
// and how many requests wait for the model now.
struct ServerSettings {
  Limits limits;
  inference::HdOptions hd;
  size_t queue = 8;            // inference jobs that may wait while one runs
  double timeout_s = 120;      // per request, from arrival to the answer
  int quality = 100;           // JPEG and lossy WebP answers
  int64_t memory_budget_bytes = int64_t(4) << 30;  // held by requests at once (bodies, images)
};
nlohmann::json server_config_json(const nlohmann::json& model, const ServerSettings& settings, size_t waiting = 0);

}  // namespace pconv::serve
