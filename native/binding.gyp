{
  "targets": [
    {
      "target_name": "splice_relay",
      "sources": ["src/splice_relay.cc", "src/splice_pairs.cc", "src/fastpath.cc", "src/fastpath_parse.cc", "src/netlink_watch.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_DISABLE_CPP_EXCEPTIONS", "NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra"],
      "libraries": ["-lpthread"]
    }
  ]
}
