# @summary Renders data as the block YAML of Kiln's config files.
#
# Hashes become mappings, arrays sequences, strings single-quoted scalars
# (so no value is read as another type), numbers and booleans as they are;
# keys are plain when they are config keys (lower case, digits, _).
# Keys whose value is undef are left out.
#
# @param value the data to render
# @param indent the indentation of this level, in spaces
# @return [String] the YAML lines, each ending in a newline
function kiln::to_yaml(Data $value, Integer[0] $indent = 0) >> String {
  $pad = sprintf("%${indent}s", '')
  case $value {
    Hash: {
      $value.filter |$k, $v| { $v =~ NotUndef }.map |$k, $v| {
        # Config keys (state_dir, log) plain, any other key quoted.
        $key = $k ? {
          /\A(true|false|null|yes|no|on|off)\z/ => kiln::yaml_scalar(String($k)),
          /\A[a-z_][a-z0-9_]*\z/                => $k,
          default                                => kiln::yaml_scalar(String($k)),
        }
        case $v {
          Hash[Any, Any, 1], Array[Any, 1]: { "${pad}${key}:\n${kiln::to_yaml($v, $indent + 2)}" }
          Hash: { "${pad}${key}: {}\n" }
          Array: { "${pad}${key}: []\n" }
          default: { "${pad}${key}: ${kiln::yaml_scalar($v)}\n" }
        }
      }.join('')
    }
    Array: {
      $value.map |$v| {
        case $v {
          Hash[Any, Any, 1], Array[Any, 1]: {
            # The first line of the nested block carries the "- ".
            $nested = kiln::to_yaml($v, $indent + 2)
            "${pad}- ${nested[$indent + 2, -1]}"
          }
          default: { "${pad}- ${kiln::yaml_scalar($v)}\n" }
        }
      }.join('')
    }
    default: { "${pad}${kiln::yaml_scalar($value)}\n" }
  }
}
