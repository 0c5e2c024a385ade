# For node-gyp-based tooling (prebuildify, `node-gyp rebuild`). CMakeLists.txt is the one source
# of compile flags: this target only asks cmake-js to build, so the two cannot drift apart.
{
  "targets": [
    {
      "target_name": "reconpatch",
      "type": "none",
      "actions": [
        {
          "action_name": "cmake_js_compile",
          "inputs": ["CMakeLists.txt"],
          "outputs": ["build/Release/reconpatch.node"],
          "action": ["node", "scripts/build-native.mjs"]
        }
      ]
    }
  ]
}
