{
  "targets": [
    {
      "target_name": "tableflip",
      "sources": ["tableflip.c"],
      "cflags": ["-Wall", "-Wextra", "-O2", "-Werror=implicit-function-declaration"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
