# @summary A Kiln mirror: package kiln-mirror, /etc/kiln/mirror.yaml, kiln-mirror.
#
# The mirror serves, over HTTP, the repositories the publisher pushes into
# its root by rsync (the rsync daemon or ssh account that receives them is
# not managed here). Its unit runs as a dynamic user with the root
# read-only. The config is checked with `mirror serve --check-config`
# before it is written.
#
# @param root The directory holding the repositories.
# @param manage_root Whether Puppet makes the root directory.
# @param listen HTTP address the repositories are served on.
# @param metrics_listen Address of /metrics and /healthz; undef for none.
# @param log_level trace, debug, info, warn or error.
# @param settings Any other settings, merged over the ones above.
# @param package_ensure The package's ensure.
# @param manage_service Whether Puppet runs and enables kiln-mirror.
class kiln::mirror (
  String[1] $root = '/srv/kiln/mirror',
  Boolean $manage_root = true,
  String[1] $listen = '0.0.0.0:8080',
  Optional[String[1]] $metrics_listen = '127.0.0.1:9445',
  Enum['trace', 'debug', 'info', 'warn', 'error'] $log_level = 'info',
  Hash $settings = {},
  String[1] $package_ensure = 'installed',
  Boolean $manage_service = true,
) {
  if $manage_root {
    exec { "kiln mirror root ${root}":
      command => "/bin/mkdir -p '${root}'",
      creates => $root,
      before  => Kiln::Role['mirror'],
    }
  }

  kiln::role { 'mirror':
    settings       => {
      'root'           => $root,
      'listen'         => $listen,
      'metrics_listen' => $metrics_listen,
      'log'            => { 'level' => $log_level },
    } + $settings,
    check          => '/usr/bin/mirror serve --check-config --config %',
    service        => 'kiln-mirror',
    package_ensure => $package_ensure,
    manage_service => $manage_service,
  }
}
