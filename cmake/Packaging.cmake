# The Debian package (scripts/package, docs/deployment.md "Installing the Debian package"):
# /usr/bin/pgdog, the example configuration as conffiles in /etc/pgdog, the systemd unit of
# deploy/systemd with the package's paths, and maintainer scripts (packaging/debian/) that create
# the pgdog system user and its state directory. The install() rules only matter to
# `cmake --install` and cpack; they add nothing to the normal build.

include(GNUInstallDirs)

install(TARGETS pgdog RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT pgdog)
# The example configuration, with CUTOVER's state where the pgdog user may write (/etc/pgdog is
# not, and systemd's ProtectSystem=strict keeps it read-only).
file(READ ${PROJECT_SOURCE_DIR}/example.pgdog.toml PGDOG_EXAMPLE_CONFIG)
set(PGDOG_STATE_LINE "# cutover_state = \"/var/lib/pgdog/pgdog-cutover.toml\"")
string(FIND "${PGDOG_EXAMPLE_CONFIG}" "${PGDOG_STATE_LINE}" found)
if(found EQUAL -1)
  message(FATAL_ERROR "example.pgdog.toml has no line '${PGDOG_STATE_LINE}' to uncomment")
endif()
string(REPLACE "${PGDOG_STATE_LINE}" "cutover_state = \"/var/lib/pgdog/pgdog-cutover.toml\""
       PGDOG_EXAMPLE_CONFIG "${PGDOG_EXAMPLE_CONFIG}")
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/example.pgdog.toml)
file(WRITE ${CMAKE_BINARY_DIR}/packaging/pgdog.toml "${PGDOG_EXAMPLE_CONFIG}")
install(FILES ${CMAKE_BINARY_DIR}/packaging/pgdog.toml DESTINATION /etc/pgdog COMPONENT pgdog)
install(FILES ${PROJECT_SOURCE_DIR}/example.users.toml DESTINATION /etc/pgdog
        RENAME users.toml COMPONENT pgdog)
install(DIRECTORY DESTINATION /var/lib/pgdog COMPONENT pgdog)

# One unit to maintain: the package's is deploy/systemd/pgdog.service with the binary where the
# package puts it, and the state directory systemd keeps writable under ProtectSystem=strict.
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
             ${PROJECT_SOURCE_DIR}/deploy/systemd/pgdog.service)
file(READ ${PROJECT_SOURCE_DIR}/deploy/systemd/pgdog.service PGDOG_UNIT)
string(REPLACE "/usr/local/bin/pgdog" "/usr/bin/pgdog" PGDOG_UNIT "${PGDOG_UNIT}")
string(REGEX REPLACE "# docs/deployment.md explains this unit\\.[^\n]*\n#[^\n]*\n"
       "# Installed by the pgdog Debian package; docs/deployment.md explains this unit.\n"
       PGDOG_UNIT "${PGDOG_UNIT}")
string(REPLACE "Group=pgdog\n"
       "Group=pgdog\n# /var/lib/pgdog, owned by pgdog, its working directory.\nStateDirectory=pgdog\nWorkingDirectory=/var/lib/pgdog\n"
       PGDOG_UNIT "${PGDOG_UNIT}")
foreach(expected "/usr/bin/pgdog --config" "StateDirectory=pgdog" "Installed by the pgdog Debian")
  string(FIND "${PGDOG_UNIT}" "${expected}" found)
  if(found EQUAL -1)
    message(FATAL_ERROR "cmake/Packaging.cmake: deploy/systemd/pgdog.service changed shape; "
                        "the package's unit lacks '${expected}'")
  endif()
endforeach()
file(GENERATE OUTPUT ${PROJECT_BINARY_DIR}/packaging/pgdog.service CONTENT "${PGDOG_UNIT}")
# Debian 12 keeps the units shipped by packages in /lib/systemd/system.
install(FILES ${PROJECT_BINARY_DIR}/packaging/pgdog.service DESTINATION /lib/systemd/system
        COMPONENT pgdog)

# cpack would otherwise build every target (the tests too) before packaging; scripts/package
# builds the pgdog target itself, so packaging reuses the binary that is already there.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)

set(CPACK_GENERATOR DEB)
# The unit above names /usr/bin/pgdog, whatever CMAKE_INSTALL_PREFIX a plain install uses.
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_PACKAGE_NAME pgdog)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "PostgreSQL pooler and proxy that mirrors transactions to a new cluster")
set(CPACK_PACKAGE_DESCRIPTION
    "pgdog pools PostgreSQL server connections, sends every transaction to the primary and\n\
replays each committed transaction on one or more mirror clusters, counting every outcome on\n\
/metrics for Prometheus, so a migration's cutover can be judged safe.")
set(CPACK_PACKAGE_CONTACT "pgdog maintainers <maintainers@users.noreply.r-seed-a61e2c24.example>")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SECTION database)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Depends from the shared libraries the binary links (dpkg-shlibdeps, from dpkg-dev).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# The RelWithDebInfo binary is three times larger with its debug information.
set(CPACK_STRIP_FILES ON)
# adduser creates the system user in postinst.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/packaging/debian/conffiles
    ${PROJECT_SOURCE_DIR}/packaging/debian/postinst
    ${PROJECT_SOURCE_DIR}/packaging/debian/prerm
    ${PROJECT_SOURCE_DIR}/packaging/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# Only what install() above puts in the pgdog component, whatever else a dependency installs.
set(CPACK_COMPONENTS_ALL pgdog)
set(CPACK_DEB_COMPONENT_INSTALL OFF)
set(CPACK_MONOLITHIC_INSTALL OFF)
set(CPACK_OUTPUT_FILE_PREFIX ${PROJECT_BINARY_DIR})
include(CPack)
