{
  "targets": [
    {
      "target_name": "masq_tun",
      "sources": ["native/tun.cc", "native/netlink.cc", "native/unix-dgram.cc", "native/steering.cc", "native/uring.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_DISABLE_CPP_EXCEPTIONS", "NAPI_VERSION=8"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra"],
      "libraries": ["-luring"]
    }
  ]
}
