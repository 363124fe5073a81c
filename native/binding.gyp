{
  # Builds the pathotype engine addon against libtorch, and the slide reader against OpenSlide. scripts/build-native.js passes
  # libtorch_include and libtorch_lib (the system's libtorch-dev, or $LIBTORCH).
  "variables": {
    "libtorch_include%": "/usr/include",
    "libtorch_lib%": "/usr/lib/x86_64-linux-gnu"
  },
  "targets": [
    {
      "target_name": "pathotype_engine",
      "sources": [
        "src/addon.cc",
        "src/spec.cc",
        "src/network.cc",
        "src/network_wrap.cc",
        "src/distributed.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<(libtorch_include)",
        "<(libtorch_include)/torch/csrc/api/include"
      ],
      # USE_C10D_GLOO: Debian's libtorch is built with c10d's Gloo backend; its header needs the flag.
      "defines": ["NAPI_CPP_EXCEPTIONS", "NAPI_VERSION=8", "USE_C10D_GLOO"],
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-frtti", "-O2", "-Wno-unused-parameter"],
      "libraries": [
        "-L<(libtorch_lib)",
        "-Wl,-rpath,<(libtorch_lib)",
        "-ltorch",
        "-ltorch_cpu",
        "-lc10"
      ]
    },
    {
      # Whole-slide images through Debian's libopenslide-dev: a second, small addon, so that the
      # engine does not depend on OpenSlide.
      "target_name": "pathotype_slide",
      "sources": ["slide/slide.cc"],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "/usr/include/openslide"
      ],
      "defines": ["NAPI_CPP_EXCEPTIONS", "NAPI_VERSION=8"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-O2", "-Wno-unused-parameter"],
      "libraries": ["-lopenslide"]
    }
  ]
}
