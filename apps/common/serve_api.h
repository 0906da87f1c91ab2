#pragma once
// inpaint-serve's HTTP API apart from the sockets: what a request must hold, how it is
// checked, and the JSON the endpoints answer, so that all of it is tested (and can be fuzzed)
// without a server. The API is IOPaint's (https://github.com/Sanster/IOPaint), so its page
// and clients work:
//   POST /api/v1/inpaint        JSON {"image": base64, "mask": base64, optional "hd_strategy",
//                               "hd_strategy_crop_margin", "hd_strategy_crop_trigger_size",
//                               "hd_strategy_resize_limit"} → the PNG bytes
//   GET  /api/v1/server-config  what the server accepts
//   GET  /api/v1/model          the model: name, config, device
// Errors are {"error": "<one line>"} with 400 (bad request), 413 (too large) or 503 (busy).
#include <nlohmann/json.hpp>
#include <string>

#include "apps/common/hd_strategy.h"

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

struct InpaintRequest {
  ImageU8 image;     // RGB, with the alpha channel when the image had one
  MaskImage mask;    // 1 = known; holes where the mask's mean RGB is over 127 (white)
  bool had_alpha = false;
  inference::HdOptions hd;
};

// Parses and checks POST /api/v1/inpaint's body. `image` and `mask` are base64 with or without
// a "data:image/...;base64," prefix; unknown fields are ignored (IOPaint's clients send many).
// Throws ApiError 400 (not JSON, a field missing or of the wrong type, bad base64, not an
// image, mask and image sizes differ, a bad HD option) or 413 (over limits.max_pixels).
InpaintRequest parse_inpaint_request(const std::string& body, const Limits& limits,
                                     const inference::HdOptions& defaults);

std::string error_json(const std::string& message);  // {"error": "..."}

// GET /api/v1/model: IOPaint's ModelInfo fields plus pconv's architecture and device.
nlohmann::json model_json(const std::string& name, const PConvUNetConfig& config, const std::string& device);

// GET /api/v1/server-config: IOPaint's fields (no plugins, no file manager, one model) plus,
// under "pconv", the limits, the HD defaults and how many requests wait for the model now.
struct ServerSettings {
  Limits limits;
  inference::HdOptions hd;
  size_t queue = 8;            // inference jobs that may wait while one runs
  double timeout_s = 120;      // per request, from arrival to the answer
};
nlohmann::json server_config_json(const nlohmann::json& model, const ServerSettings& settings, size_t waiting = 0);

}  // namespace pconv::serve
