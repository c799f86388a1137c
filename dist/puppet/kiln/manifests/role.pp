# @summary One Kiln role on a node: its package, its config file, its service.
#
# Used by the role classes (kiln::coordinator, kiln::worker,
# kiln::publisher, kiln::mirror); the title is the role.
#
# @param settings
#   The config file's settings (rendered as YAML by kiln::to_yaml).
# @param check
#   The command that checks the config before Puppet writes it (% is the
#   file), the role's binary with --check-config.
# @param service
#   The systemd unit the role runs (restarted when the config changes).
# @param package_ensure
#   The package's ensure (installed, latest or a version).
# @param manage_service
#   Whether Puppet runs and enables the services. Set it to false where
#   systemd does not run (a chroot, a container) or where something else
#   starts them.
# @param config_group
#   The group that may read the config file (mode 0640); root when it holds
#   nothing secret (mode 0644).
define kiln::role (
  Hash $settings,
  String[1] $check,
  String[1] $service,
  String[1] $package_ensure = 'installed',
  Boolean $manage_service = true,
  String[1] $config_group = 'root',
) {
  include kiln

  $role = $title
  $config = "${kiln::config_dir}/${role}.yaml"
  $mode = $config_group ? {
    'root'  => '0644',
    default => '0640',
  }

  package { "kiln-${role}":
    ensure => $package_ensure,
  }

  file { $config:
    ensure       => file,
    owner        => 'root',
    group        => $config_group,
    mode         => $mode,
    content      => epp('kiln/config.yaml.epp', {
      'role'     => $role,
      'check'    => regsubst($check, '%', $config),
      'settings' => $settings,
    }),
    validate_cmd => $check,
    require      => [Package["kiln-${role}"], File[$kiln::config_dir]],
  }

  if $manage_service {
    service { $service:
      ensure    => running,
      enable    => true,
      subscribe => File[$config],
      require   => Package["kiln-${role}"],
    }
  }
}
