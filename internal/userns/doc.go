// Package userns runs layerimg inside a user namespace, as rootless Podman
// and Buildah do: uid and gid 0 inside are the user, 1..65535 inside come
// from the user's subordinate ranges in /etc/subuid and /etc/subgid, mapped
// by the setuid helpers newuidmap and newgidmap.
//
// The whole build runs inside, as root of the namespace: unpacking layers
// with their owners, the run-step sandbox, turning upper dirs into tars and
// removing them all need to act on files owned by the mapped ids, which
// the user outside cannot even read. Inside, the kernel shows those files
// with the ids of the image, so the layers written are the same bytes a
// root build writes.
//
// [Enter] starts a copy of layerimg in a new user namespace and waits for
// it; [Main], called first thing in main, is that copy's side.
package userns
