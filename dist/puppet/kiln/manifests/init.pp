# @summary Common settings of Kiln's role classes.
#
# Kiln is a package build farm with four roles, one Debian package and one
# class each: kiln::coordinator, kiln::worker, kiln::publisher and
# kiln::mirror. Each installs its package (from an apt repository the node
# already has configured), writes /etc/kiln/<role>.yaml from its
# parameters, checked by the role's binary before it is written, and
# manages its service. This class holds what they share; the role classes
# include it.
#
# @param config_dir
#   Where the config files are written; the packages' units read
#   /etc/kiln/<role>.yaml.
#
# @example
#   class { 'kiln::worker':
#     coordinator => 'coord.example.org:7420',
#     tls         => { 'cert' => '/etc/kiln/pki/w1.pem', 'key' => '/etc/kiln/pki/w1-key.pem', 'ca' => '/etc/kiln/pki/ca.pem' },
#     token_file  => '/etc/kiln/w1.token',
#   }
class kiln (
  Pattern[/^\//] $config_dir = '/etc/kiln',
) {
  file { $config_dir:
    ensure => directory,
    owner  => 'root',
    group  => 'root',
    mode   => '0755',
  }
}
