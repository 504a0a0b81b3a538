package main

import (
	"github.com/spf13/cobra"
)

func newPublishCmd(g *globalFlags) *cobra.Command {
	c := group(&cobra.Command{
		Use:   "publish",
		Short: "Publish a finished disk to a cloud",
	})
	c.AddCommand(newPublishVSphereCmd(g), newPublishAWSCmd(g), newPublishAzureCmd(g))
	return c
}
