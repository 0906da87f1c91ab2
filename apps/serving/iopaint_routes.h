#pragma once
// IOPaint's routes beyond inpainting, for its web app and the Krita and darktable plugins:
// model switching, the input image (--input), saving results (--output-dir), adjust_mask,
// samplers, gen-info, the file manager (Socket.IO is apps/serving/socket_io.h). The answers that need no server state are pure
// functions here, tested without sockets.
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "apps/serving/http_server.h"
#include "apps/serving/serve_api.h"

namespace pconv::serve {

struct ModelChoice {
  std::string name, path;  // name: what clients see and send (the file's stem)
};
struct LoadedModel {
  Inpainter inpainter;
  nlohmann::json info;  // model_json
};

struct IopaintSettings {
  std::string input;       // --input: a photo (GET /api/v1/inputimage) or a folder
  std::string output_dir;  // --output-dir: where POST /api/v1/save_image writes
  std::string web_app;     // --web-app: a built web app (IOPaint's web_app/dist) served at /
  std::vector<ModelChoice> models;                     // POST /api/v1/model may switch to these
  std::function<LoadedModel(const ModelChoice&)> load;  // run on the model's thread
};

// POST /api/v1/adjust_mask: {"mask": base64, "operate": "expand"|"shrink"|"reverse",
// "kernel_size": n} → IOPaint's answer: an RGBA PNG, the brush colour (255, 203, 0, 186) where
// the adjusted mask is a hole (elliptical kernel of 2n+1 as OpenCV's dilate/erode).
http::Response adjust_mask_answer(const std::string& body, const Limits& limits);
// GET /api/v1/samplers: IOPaint's list (its answer whatever the model; pconv uses none).
nlohmann::json samplers_json();
// POST /api/v1/gen-info (multipart `file`): the prompt in a PNG's "parameters" text, as
// IOPaint reads it; empty for pconv's own images.
http::Response gen_info_answer(const std::string& content_type, const std::string& body);
// GET /api/v1/inputimage: the --input file as it is (Content-Disposition naming it when its name
// is an HTTP token), IOPaint's 200-with-error when none.
http::Response input_image_answer(const std::string& input, const Limits& limits);
// POST /api/v1/save_image (multipart `file`): written atomically as output_dir/<basename>.
http::Response save_image_answer(const std::string& output_dir, const std::string& content_type,
                                 const std::string& body);

// IOPaint's file manager, on when --input is a folder: GET /api/v1/medias?tab=input|output|mask
// (names, sizes, times), media_file and media_thumbnail_file?tab=&filename= (the file as it
// is: the browser scales it). Names are single path components within the tab's folder.
http::Response medias_answer(const IopaintSettings& settings, const std::string& query);
http::Response media_file_answer(const IopaintSettings& settings, const std::string& query, const Limits& limits);

// GET of a file of the built web app in `root` (--web-app; IOPaint's web_app/dist, which IOPaint
// serves at / as StaticFiles): "/" and a path ending in "/" are its index.html; the path,
// %XX-decoded, must name a regular file inside `root` with symlinks resolved, or it is 404.
http::Response web_app_answer(const std::string& root, const std::string& path);

// The value of `name` in a query string ("a=1&b=2"), %XX and '+' decoded; "" when absent.
std::string query_param(const std::string& query, const std::string& name);

}  // namespace pconv::serve
