# @summary Renders one value as a YAML scalar.
#
# Strings are single-quoted (a quote inside is doubled), so that `yes`,
# `1.0` or `0755` stay strings; numbers and booleans are written as they
# are.
#
# @param value the value to render
# @return [String] the scalar
function kiln::yaml_scalar(Variant[String, Numeric, Boolean] $value) >> String {
  case $value {
    String: {
      if $value =~ /[\n\r]/ {
        fail("kiln: a value with a line break cannot be written to a Kiln config file: ${value}")
      }
      "'${regsubst($value, "'", "''", 'G')}'"
    }
    default: { String($value) }
  }
}
