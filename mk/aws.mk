# AWS provider and its local EC2 endpoint (no AWS account or network needed).
AWS_PKGS := ./provider/aws/... ./test/ec2/...

.PHONY: aws-test aws-lint bench-aws

## aws-test: the AWS provider against the local EC2 endpoint (loopback only)
aws-test:
	AWS_EC2_METADATA_DISABLED=true $(GO) test -count=1 -timeout 10m $(AWS_PKGS)

## aws-lint: gofmt, vet and staticcheck of the AWS packages
aws-lint:
	@out=$$(gofmt -l provider/aws test/ec2); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(AWS_PKGS)
	$(GO) tool staticcheck $(AWS_PKGS)

## bench-aws: create/delete cost and 100 parallel creates with 2 s EC2 latency (docs/benchmarks.md, ## aws)
bench-aws:
	AWS_EC2_METADATA_DISABLED=true $(GO) test -count=1 -timeout 10m -run '^$$' -bench . -benchmem -benchtime 2s ./provider/aws/
