# placeholder; the guest kernel's build rules live here
.PHONY: guest
guest:
