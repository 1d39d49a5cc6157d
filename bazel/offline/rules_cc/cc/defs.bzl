"""Offline stand-in for `@rules_cc//cc:defs.bzl`: re-exports Bazel's native C++ rules.

Bazel 4's `@bazel_tools` loads `@rules_cc//cc:defs.bzl` and would otherwise download rules_cc from
GitHub. Debian's `bazel-rules-cc` package is too new for Bazel 4, so this repository (bound by
`local_repository` in the root WORKSPACE) just forwards to the built-in rules.
"""

def cc_binary(**attrs):
    native.cc_binary(**attrs)

def cc_import(**attrs):
    native.cc_import(**attrs)

def cc_library(**attrs):
    native.cc_library(**attrs)

def cc_proto_library(**attrs):
    native.cc_proto_library(**attrs)

def cc_test(**attrs):
    native.cc_test(**attrs)

def cc_toolchain(**attrs):
    native.cc_toolchain(**attrs)

def cc_toolchain_suite(**attrs):
    native.cc_toolchain_suite(**attrs)

def fdo_prefetch_hints(**attrs):
    native.fdo_prefetch_hints(**attrs)

def fdo_profile(**attrs):
    native.fdo_profile(**attrs)

def objc_import(**attrs):
    native.objc_import(**attrs)

def objc_library(**attrs):
    native.objc_library(**attrs)
